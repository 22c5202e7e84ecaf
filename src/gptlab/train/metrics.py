"""Where training numbers go: metrics.jsonl always, TensorBoard and W&B when asked, a live line.

metrics.jsonl holds one JSON object per logged step:

    {"step": 100, "tokens": 819200, "elapsed_s": 12.3, "lr": 0.00098, "train_loss": 2.01,
     "grad_norm": 0.41, "tokens_per_s": 66000.0, "mfu": 0.52}

and at evaluations also "val_loss", "val_ppl", "eval_train_loss" (the same fixed-sample loss on
the train split) and any extra eval's numbers. Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from tqdm.auto import tqdm

from gptlab.device import dtype_label
from gptlab.errors import GptlabError
from gptlab.fileio import METRICS_LOG_FILE, atomic_write_text, jsonl_records
from gptlab.optional import import_optional


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_LOG_FILE
    if not path.is_file():
        raise GptlabError(
            f"{run_dir} has no {METRICS_LOG_FILE}: is it a gptlab training run folder?"
        )
    return [record for _, record in jsonl_records(path, torn_tail_ok=True)]


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Drop lines logged after `last_step` (a resumed run repeats the steps after its checkpoint),
    and a torn last line."""
    path = Path(run_dir) / METRICS_LOG_FILE
    if not path.is_file():
        return
    kept = [r for _, r in jsonl_records(path, torn_tail_ok=True) if r.get("step", 0) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


class MetricsLogger:
    """Append records to metrics.jsonl and mirror them to TensorBoard / W&B when enabled."""

    def __init__(
        self, run_dir: Path, *, tensorboard: bool, wandb: bool, wandb_project: str, run_config: dict
    ):
        self.path = run_dir / METRICS_LOG_FILE
        self.file = open(self.path, "a", encoding="utf-8")
        self.tensorboard = None
        self.wandb_run = None
        if tensorboard:
            import_optional("tensorboard", "tensorboard")  # torch's writer needs the package
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if wandb:
            wandb_module = import_optional("wandb", "wandb")
            self.wandb_run = wandb_module.init(
                project=wandb_project, name=run_dir.name, dir=str(run_dir), config=run_config
            )

    def log(self, record: dict) -> None:
        clean = {k: _json_number(v) for k, v in record.items()}
        self.file.write(json.dumps(clean) + "\n")
        self.file.flush()  # a killed run keeps every line it logged
        step = record["step"]
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _json_number(value):
    """JSON has no NaN/inf: write them as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class ProgressLine:
    """The live console line: step, loss, lr, grad norm, tokens/s, MFU where known, and ETA.

    The bar counts steps when the budget is in steps and seconds when it is a wall-clock budget,
    so tqdm's ETA is right in both cases.
    """

    def __init__(
        self,
        *,
        total_steps: int | None,
        total_seconds: float | None,
        start_step: int,
        enabled: bool,
    ):
        self.by_time = total_steps is None
        total = total_seconds if self.by_time else total_steps
        initial = 0 if self.by_time else start_step
        unit = "s" if self.by_time else "step"
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit=unit,
            disable=not enabled,
            dynamic_ncols=True,
            leave=True,
        )
        self.last_refresh = float("-inf")

    def update(self, step: int, elapsed_s: float, record: dict) -> None:
        if self.bar.disable:
            return
        if self.by_time:
            self.bar.n = min(round(elapsed_s, 1), self.bar.total)
        else:
            self.bar.n = step
        parts = {"step": str(step)} if self.by_time else {}
        parts |= {
            "loss": f"{record['train_loss']:.4f}",
            "lr": f"{record['lr']:.2e}",
            "gnorm": f"{record['grad_norm']:.2f}",
            "tok/s": f"{record['tokens_per_s']:,.0f}",
        }
        if record.get("mfu") is not None:
            parts["mfu"] = f"{100 * record['mfu']:.1f}%"
        if record.get("val_loss") is not None:
            parts["val"] = f"{record['val_loss']:.4f}"
        self.bar.set_postfix(parts, refresh=False)
        # Redraw at most every mininterval seconds (0.1 s in a terminal, 10 s into a log file:
        # see gptlab.cli), but always when there is a new val loss to show.
        now = time.monotonic()
        if now - self.last_refresh >= self.bar.mininterval or "val" in parts:
            self.bar.refresh()
            self.last_refresh = now

    def write(self, message: str) -> None:
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


def describe_run(
    config,
    *,
    num_parameters: int,
    device,
    dtype,
    world_size: int,
    accumulation_steps: int,
    start_step: int,
    run_dir: Path,
) -> str:
    """The line printed when training starts: model, hardware, batch, budget, folder."""
    model, train = config.model, config.train
    budgets = []
    if train.max_steps is not None:
        budgets.append(f"{train.max_steps} steps")
    if train.max_seconds is not None:
        budgets.append(f"{train.max_seconds:g} s of training")
    processes = f" x {world_size} processes" if world_size > 1 else ""
    ramp = ""
    if train.batch_ramp_steps and start_step < train.batch_ramp_steps:
        ramp = f", the first {train.batch_ramp_steps:,} ramping up from {train.batch_ramp_start:,}"
    start = f"resuming at step {start_step} in" if start_step else "run folder"
    return (
        f"gptlab train: {num_parameters / 1e6:.2f}M parameters ({model.n_layer} layers, "
        f"{model.n_head} heads, {model.n_embd} wide, context {model.block_size}, vocab "
        f"{model.vocab_size}) on {device}{processes}, {dtype_label(dtype)}; "
        f"{train.tokens_per_step:,} tokens/step ({accumulation_steps} micro-step(s) of "
        f"{train.micro_batch_size}){ramp}; budget {' or '.join(budgets)}; {start} {run_dir}"
    )


def describe_result(result, train) -> str:
    """The line printed when training ends (`train`: the run's TrainConfig, for what was measured)."""
    val = ""
    if result.val_loss is not None:
        best = f"best {result.best_val_loss:.4f}"
        if train.final_eval_tokens != train.eval_tokens:  # two measures: say which is which
            final = (
                "the whole val split"
                if train.final_eval_tokens is None
                else f"{train.final_eval_tokens:,} val tokens"
            )
            best += f" on the {train.eval_tokens:,} val tokens every evaluation uses"
            val = f"val loss {result.val_loss:.4f} on {final} ({best}), "
        else:
            val = f"val loss {result.val_loss:.4f} ({best}), "
    if result.val_loss_raw is not None:
        val += f"the last raw weights (not averaged) {result.val_loss_raw:.4f}, "
    warmup = ""
    if result.compile_warmup_seconds:
        warmup = f", {result.compile_warmup_seconds:.1f} s compiling before the clock"
    return (
        f"done: {result.steps} steps, {result.tokens:,} tokens, {val}"
        f"{result.train_seconds:.1f} s training ({result.wall_seconds:.1f} s in all{warmup}), "
        f"{result.tokens_per_s:,.0f} tokens/s; run folder {result.run_dir}"
    )
