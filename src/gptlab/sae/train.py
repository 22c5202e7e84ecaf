"""Train a sparse autoencoder on a model's activations at one hook point.

Each step: a shuffled batch of activations from the buffer (gptlab.sae.activations), the
reconstruction loss (squared error summed over the activation, averaged over tokens, as SAELens
and Gao et al. write it) plus the kind's sparsity term (AuxK for topk, L1 for relu), one Adam
step with the gradient clipped, then the decoder rows back to unit norm.

A feature is dead when it has not fired in the last `dead_window` training tokens; AuxK feeds
exactly those features a gradient, and with `resample_every` set they are also restarted
(gptlab.sae.resample). The learning rate warms up, stays, then decays linearly to 0 over the
last `decay_fraction` of the token budget.

Resumable like a training run: checkpoints/step-N holds the weights, Adam's moments, the
buffer's unserved activations and its loader and generator states, and the dead-feature
counters, so a run killed and resumed takes the same steps as one that never stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.data.prepared_folder import read_meta
from gptlab.device import require_memory, resolve_device
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text, remove_entries
from gptlab.sae.activations import ActivationBuffer, activations_at, check_hook, data_folder
from gptlab.sae.folder import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    latest_checkpoint,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
    save_sae,
)
from gptlab.sae.model import SparseAutoencoder, auxk_loss, l1_penalty
from gptlab.sae.options import SaeOptions
from gptlab.sae.resample import resample_dead

LOG_EVERY = 10  # steps between metrics.jsonl lines
# What an SAE folder may hold (written here and by gptlab sae eval / features).
OWNED = {
    CONFIG_FILE,
    WEIGHTS_FILE,
    METRICS_FILE,
    CHECKPOINTS_DIR,
    "eval.json",
    "feature-density.png",
    "features.safetensors",
    "features.html",
}
# Settings a resumed run may change: they do not alter the steps it takes.
RESUMABLE_CHANGES = {"max_seconds", "device", "checkpoint_every", "out", "tokens"}


def check_out_folder(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """Whether `out` may take this run (nothing written); the checkpoint to resume from, if any."""
    if resume and overwrite:
        raise GptlabError("resume and overwrite contradict each other; pick one")
    if out.exists() and not out.is_dir():
        raise GptlabError(f"out {out} is a file; give a folder")
    checkpoint = latest_checkpoint(out) if out.is_dir() else None
    if resume:
        if checkpoint is None:
            raise GptlabError(f"nothing to resume: {out} holds no SAE checkpoint")
        return checkpoint
    if out.is_dir() and any(out.iterdir()):
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OWNED)
        if foreign:  # --overwrite deletes what an SAE run wrote, never anything else
            raise GptlabError(
                f"{out} holds files that are not an SAE's ({', '.join(foreign[:3])}); "
                "pick another output folder (out)"
            )
        if not overwrite:
            raise GptlabError(
                f"{out} already holds an SAE; replace it (overwrite) or continue it (resume)"
            )
    return None


def clear_out_folder(out: Path) -> None:
    """Delete what an SAE run and its evaluations wrote in `out` (nothing else)."""
    remove_entries(out, OWNED)


def training_bytes(options: SaeOptions, d_in: int) -> int:
    """A lower bound on what training holds at once: weights, their gradients and Adam's two
    moments (4x the weights), the activation buffer, and a batch's (batch, features) activations
    (pre-activations, activations, their gradients)."""
    weights = SparseAutoencoder.weight_bytes(d_in, options.features)
    return (
        4 * weights + 4 * options.buffer_size * d_in + 3 * 4 * options.batch_size * options.features
    )


def train_sae(
    options: SaeOptions,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    on_step: Callable[[dict], None] | None = None,
) -> Path:
    """Train the SAE the options describe into options.out; returns the folder."""
    from gptlab.checkpoints.open import open_model

    options.validate()
    out = Path(options.out)
    checkpoint = check_out_folder(out, resume, overwrite)
    device = resolve_device(options.device, "device=")
    model, _ = open_model(options.model, device)
    model.eval().requires_grad_(False)
    hook = check_hook(model, options.hook)
    folder = data_folder(options.model, options.data)
    if int(read_meta(folder)["vocab_size"]) > model.config.vocab_size:
        raise GptlabError(
            f"{folder} was tokenized with a larger vocabulary than {options.model}'s; "
            "give the data the model was trained on (data=DIR)"
        )
    d_in = activations_at(model, torch.zeros(1, 1, dtype=torch.long, device=device), hook).shape[-1]
    require_memory(
        training_bytes(options, d_in),
        f"training an SAE of {options.features:,} features (buffer_size {options.buffer_size:,}, "
        f"batch_size {options.batch_size:,})",
        device,
    )
    if overwrite and out.exists():
        clear_out_folder(out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(options.seed)
    sae = SparseAutoencoder(d_in, options.features, options.kind, options.k).to(device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=options.lr, betas=(0.9, 0.999))
    buffer = ActivationBuffer(
        model,
        hook,
        folder,
        capacity=options.buffer_size,
        batch_size=options.batch_size,
        model_batch_size=options.model_batch_size,
        seed=options.seed,
    )
    since_fired = torch.zeros(options.features, dtype=torch.long, device=device)
    step, elapsed = 0, 0.0
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, sae)
        changed = sorted(
            key
            for key, value in state["options"].items()
            if key not in RESUMABLE_CHANGES and getattr(options, key) != value
        )
        if changed:
            raise GptlabError(
                f"cannot resume {out} with different settings: {', '.join(changed)}; "
                "use the settings it started with, or replace it (overwrite)"
            )
        optimizer.load_state_dict(state["optimizer"])
        buffer.load_state_dict(state["buffer"])
        since_fired = state["since_fired"].to(device)
        step, elapsed = int(state["step"]), float(state["elapsed"])
        keep_metrics(out / METRICS_FILE, step)
    else:
        start_sae(sae, options, buffer.waiting())

    total = options.total_steps
    bar = tqdm(
        total=total * options.batch_size,
        initial=step * options.batch_size,
        unit="tok",
        unit_scale=True,
        desc="gptlab sae train",
        disable=not show_progress,
    )
    started = time.perf_counter() - elapsed
    log = open(out / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115 (closed in finally)
    try:
        while step < total:
            if (
                options.max_seconds is not None
                and time.perf_counter() - started >= options.max_seconds
            ):
                break
            x = buffer.next_batch().to(device)
            record = train_step(sae, optimizer, x, since_fired, options, step)
            step += 1
            maybe_resample(sae, optimizer, x, since_fired, options, step)
            bar.update(options.batch_size)
            if step % LOG_EVERY == 0 or step == total:
                record["step"] = step
                record["tokens"] = step * options.batch_size
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(
                    mse=f"{record['mse']:.4g}",
                    fve=f"{record['fve']:.3f}",
                    l0=f"{record['l0']:.1f}",
                    dead=record["dead"],
                )
            if on_step is not None:
                on_step({"step": step})
            if options.checkpoint_every and step % options.checkpoint_every == 0 and step < total:
                state = {
                    "options": options.to_dict(),
                    "optimizer": optimizer.state_dict(),
                    "buffer": buffer.state_dict(),
                    "since_fired": since_fired.cpu(),
                    "step": step,
                    "elapsed": time.perf_counter() - started,
                }
                save_checkpoint(out, step, sae, state)
    finally:
        log.close()
        bar.close()
    seconds = time.perf_counter() - started
    info = {
        "model": str(options.model),
        "model_fingerprint": model_fingerprint(model),
        "hook": hook,
        "data": str(folder),
        "context_size": model.config.block_size,
        "trained_tokens": step * options.batch_size,
        "train_seconds": round(seconds, 1),
        "options": options.to_dict(),
    }
    save_sae(sae, out, info)
    shutil.rmtree(out / CHECKPOINTS_DIR, ignore_errors=True)
    if show_progress:
        rate = step * options.batch_size / max(seconds, 1e-9)
        print(
            f"done: {step} steps, {step * options.batch_size:,} activations in {seconds:.0f} s "
            f"({rate:,.0f}/s); SAE folder {out}"
        )
    return out


@torch.no_grad()
def start_sae(sae: SparseAutoencoder, options: SaeOptions, sample: torch.Tensor) -> None:
    """The SAE's first weights (gptlab.sae.model.reset_parameters), from `sample`, activations
    drawn before training: b_dec at their mean (the features then model deviations from a
    typical activation), and, unless encoder_init_scale is set, the encoder calibrated on the
    first batch's worth of them (calibrate_encoder)."""
    sae.reset_parameters(
        torch.Generator().manual_seed(options.seed), options.encoder_init_scale or 1.0
    )
    sae.b_dec.copy_(sample.mean(dim=0))
    if options.encoder_init_scale is None:
        sae.calibrate_encoder(sample[: options.batch_size])


def train_step(
    sae: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    since_fired: torch.Tensor,
    options: SaeOptions,
    step: int,
) -> dict:
    """One optimizer step on activations x (batch, d_in); updates since_fired in place."""
    for group in optimizer.param_groups:
        group["lr"] = options.lr_at(step)
    pre = sae.pre_activations(x)
    dead = since_fired >= options.dead_window
    if sae.kind == "topk":
        values, indices = sae.top_k(pre, sae.k)
        x_hat = sae.decode_sparse(values, indices)
        mse = (x_hat - x).pow(2).sum(dim=-1).mean()
        k_aux = options.aux_k or max(1, sae.d_in // 2)
        sparsity = options.aux_coefficient * auxk_loss(sae, x, x_hat, pre, dead, k_aux)
    else:
        f = sae.activate(pre)
        x_hat = sae.decode(f)
        mse = (x_hat - x).pow(2).sum(dim=-1).mean()
        sparsity = options.l1_coefficient * l1_penalty(sae, f)
    optimizer.zero_grad(set_to_none=True)
    (mse + sparsity).backward()
    sae.remove_parallel_decoder_gradient()
    if options.grad_clip:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), options.grad_clip)
    optimizer.step()
    sae.normalize_decoder()
    with torch.no_grad():
        if sae.kind == "topk":
            active = values > 0
            fired = torch.zeros_like(since_fired, dtype=torch.bool)
            fired[indices[active]] = True
        else:
            active = f > 0
            fired = active.any(dim=0)
        since_fired.add_(x.shape[0]).masked_fill_(fired, 0)
        variance = (x - x.mean(dim=0)).pow(2).sum()
        return {
            "lr": optimizer.param_groups[0]["lr"],
            "mse": mse.item(),
            "sparsity_loss": sparsity.item(),
            "fve": 1.0 - ((x_hat - x).pow(2).sum() / variance).item(),
            "l0": active.float().sum(dim=-1).mean().item(),
            "dead": int(dead.sum()),
        }


def maybe_resample(
    sae: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    since_fired: torch.Tensor,
    options: SaeOptions,
    step: int,
) -> int:
    """After optimizer step `step` (1-based): restart the dead features if resampling is on and
    it is time, never once the learning rate decays (a feature restarted then has no steps left
    to find its place); how many were restarted. Its draw is seeded by (seed, step), so
    resuming repeats it."""
    decay_starts = options.total_steps - int(options.total_steps * options.decay_fraction)
    if not options.resample_every or step % options.resample_every or step > decay_starts:
        return 0
    generator = torch.Generator().manual_seed((options.seed * 1_000_003 + step) % 2**63)
    dead = since_fired >= options.dead_window
    return resample_dead(sae, optimizer, x, dead, since_fired, generator)


def keep_metrics(path: Path, last_step: int) -> None:
    """Drop metrics lines after the checkpoint's step: the resumed run logs those steps again."""
    if not path.is_file():
        return
    lines = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["step"] <= last_step
    ]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
