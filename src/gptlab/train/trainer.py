"""The training loop: `train(config, out) -> TrainResult`.

One optimizer step:

    lr from the schedule (warmup, then cosine to min_lr over the budget)
    accumulation_steps x: next micro-batch -> forward under autocast -> (loss / accumulation).backward()
                          (DDP or FSDP average gradients across processes on the last micro-step only)
    unscale (float16 only) -> clip the global grad norm -> AdamW step -> zero the gradients

and around it: evaluation on fixed windows of both splits, samples, checkpoints (the newest few
and the best), metrics.jsonl, a live progress line and the loss-curve PNG. `gptlab train` is
this function behind a command line; the experiment runner calls it directly.

The budget counts training seconds only: time spent evaluating, sampling and checkpointing is
left out, so extra measurement never changes what a run with a wall-clock budget learns.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from gptlab.checkpoints import run as ckpt
from gptlab.checkpoints.model_folder import WEIGHTS_FILE
from gptlab.device import resolve_device, use_threads
from gptlab.errors import GptlabError
from gptlab.eval.hellaswag import hellaswag_training_eval
from gptlab.inference.generate import GenerationConfig
from gptlab.model.gpt import GPT
from gptlab.model.params import require_model_fits
from gptlab.model.state import load_state_checked
from gptlab.optional import import_optional
from gptlab.rng import seed_everything
from gptlab.train.config import RunConfig, TrainConfig
from gptlab.train.cost import RunCost
from gptlab.train.data_checks import training_data_warnings
from gptlab.train.distributed import (
    DistributedContext,
    barrier,
    full_tensor,
    gathered_model_state,
    gathered_optimizer_state,
    init_distributed,
    local_shard,
    maybe_no_sync,
    mean_across_ranks,
    shard_model,
    shutdown_distributed,
    wrap_model,
)
from gptlab.train.flops import device_peak_flops, flops_per_token, mfu
from gptlab.train.induction_eval import induction_evals
from gptlab.train.metrics import (
    MetricsLogger,
    ProgressLine,
    describe_result,
    describe_run,
    truncate_metrics,
)
from gptlab.train.optim import Schedule, build_optimizer, set_learning_rate
from gptlab.train.periodic_eval import PeriodicEval, mean_loss, perplexity, sample_text
from gptlab.train.plots import LOSS_PLOT_FILE, plot_runs
from gptlab.train.precision import autocast_context, enable_tf32, grad_scaler, resolve_dtype
from gptlab.train.resume import check_resumable, rank_state, restore_training_state, training_state
from gptlab.train.run_folder import (
    RUN_CONFIG_FILE,
    SAMPLES_FILE,
    check_run_folder,
    clear_run,
    lock_run_folder,
    truncate_samples,
)
from gptlab.train.training_data import TrainingData, wants_shard_check


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    tokens: int
    train_seconds: float  # the time the budget counts (training steps only)
    wall_seconds: float  # everything, evaluations and checkpoints included
    tokens_per_s: float  # tokens / train_seconds, all processes together
    num_parameters: int
    final_train_loss: float | None
    val_loss: float | None  # at the end of the run
    best_val_loss: float | None
    sample: str | None


def train(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    extra_evals: Sequence[PeriodicEval] = (),
    on_step: Callable[[dict], None] | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train a model as `config` says, in run folder `out`; see the module docstring.

    resume: continue the run in `out` from its latest checkpoint (same model and data required).
    overwrite: delete the run already in `out` first. extra_evals: more numbers to log at evals.
    on_step(record): called on rank 0 after every step with that step's metrics record.
    """
    config.validate()
    extra_evals = list(extra_evals) + configured_extra_evals(config)
    context, device_name = init_distributed(config.train.device)
    threads_before = torch.get_num_threads()
    use_threads(config.train.threads, "train.threads")
    trainer = None
    try:
        trainer = Trainer(
            config, Path(out), context, device_name, extra_evals, on_step, show_progress
        )
        trainer.setup(resume=resume, overwrite=overwrite)
        return trainer.run()
    except torch.OutOfMemoryError:
        raise GptlabError(
            f"out of GPU memory with train.micro_batch_size={config.train.micro_batch_size}; lower it "
            "(gradient accumulation keeps train.tokens_per_step unchanged), or shrink the model or block_size"
        ) from None
    finally:
        if trainer is not None and trainer.run_lock is not None:
            trainer.run_lock.close()  # releases the run folder
        torch.set_num_threads(threads_before)  # a library call leaves the process as it found it
        shutdown_distributed(context)


def configured_extra_evals(config: RunConfig) -> list[PeriodicEval]:
    """The periodic evaluations a run config asks for besides the loss (HellaSwag, induction)."""
    evals = induction_evals(config)
    every = config.train.eval_hellaswag_every
    if not every:
        return evals

    # Items are read now, so a missing or malformed file fails before any training.
    run = hellaswag_training_eval(
        config.train.eval_hellaswag_data, limit=config.train.eval_hellaswag_limit
    )
    return [PeriodicEval(every=every, run=run), *evals]


def accumulate_gradients(model, next_batch, steps: int, autocast, scaler) -> torch.Tensor:
    """Forward and backward over `steps` micro-batches; returns their mean loss (detached).

    Each micro-batch's loss is divided by `steps`, so the summed gradients are the gradient of
    the mean loss over all the step's tokens, as one big batch would give. Under DDP the
    gradients are averaged across processes on the last micro-step only.
    """
    loss_sum = None
    for micro_step in range(steps):
        x, y = next_batch()  # (micro_batch_size, block_size) each
        with maybe_no_sync(model, sync=micro_step == steps - 1), autocast:
            _, loss = model(x, y)
        scaler.scale(loss / steps).backward()
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
    return loss_sum / steps


def check_sample_settings(cfg: TrainConfig, tokenizer) -> None:
    """The samples' prompt and temperature, checked before training (a sample comes at the end)."""
    try:
        tokenizer.encode(cfg.sample_prompt)
    except GptlabError as exc:
        raise GptlabError(
            f"train.sample_prompt {cfg.sample_prompt!r} cannot be encoded: {exc}"
        ) from None
    GenerationConfig(max_new_tokens=cfg.sample_tokens, temperature=cfg.sample_temperature)


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        context: DistributedContext,
        device_name: str,
        extra_evals: Sequence[PeriodicEval],
        on_step: Callable[[dict], None] | None,
        show_progress: bool,
    ) -> None:
        # A copy: the trainer fills in what the data decides (vocab_size), and the caller's config
        # must stay what the caller built (gptlab experiment compares it with finished runs).
        self.config = copy.deepcopy(config)
        self.cfg = self.config.train
        self.run_dir = run_dir
        self.run_lock = None  # the open, locked RUN/.gptlab.lock while this process trains
        self.context = context
        self.device = resolve_device(device_name, "train.device=")
        self.dtype = resolve_dtype(self.cfg.dtype, self.device)
        self.autocast = autocast_context(self.device, self.dtype)
        self.extra_evals = list(extra_evals)
        self.on_step = on_step
        self.show_progress = show_progress and context.is_main
        # Progress counters, saved in every checkpoint.
        self.step = 0
        self.tokens = 0
        self.train_seconds = 0.0
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.last_train_loss: float | None = None
        self.last_sample: str | None = None
        self.print = print  # the progress bar's write() once it is showing
        self.plot_warned = False

    # -- setup ---------------------------------------------------------------------------------

    def setup(self, *, resume: bool, overwrite: bool) -> None:
        cfg, context = self.cfg, self.context
        enable_tf32()
        # Missing optional loggers are reported before anything is written.
        if cfg.tensorboard:
            import_optional("tensorboard", "tensorboard")
        if cfg.wandb:
            import_optional("wandb", "wandb")
        # Every rank checks (nothing is written yet), so a refusal stops all of them alike. This
        # first check fails fast; the one that counts comes again once the folder is locked.
        resume_from = check_run_folder(
            self.run_dir, self.config, resume=resume, overwrite=overwrite
        )
        self.accumulation_steps = self.config.accumulation_steps(context.world_size)
        self.data = TrainingData.open(
            self.config.data, context, self.device, verify_shards=wants_shard_check(self.config)
        )
        if context.is_main and resume_from is None:
            for message in training_data_warnings(
                self.data.splits, cfg.tokens_per_step, cfg.max_steps
            ):
                print(f"gptlab train: warning: {message}", file=sys.stderr)
        # The data decides the vocabulary (a character vocabulary is whatever the corpus holds).
        self.config.model.vocab_size = self.data.tokenizer.vocab_size
        self.config.model.validate()
        # FSDP builds the whole model on each device before sharding it, so the full weights
        # must fit there; its gradients and optimizer state are split over the processes.
        self.sharded = context.enabled and cfg.distributed == "fsdp"
        require_model_fits(self.config.model, self.device, training=not self.sharded)
        check_sample_settings(cfg, self.data.tokenizer)

        if context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # Locked before anything is deleted or written: a second process (say, the same
            # command started twice) is refused instead of clearing or interleaving this run.
            self.run_lock = lock_run_folder(self.run_dir)
            # Checked again under the lock: another run may have filled the folder while this
            # one was preparing its data.
            if check_run_folder(self.run_dir, self.config, resume=resume, overwrite=overwrite) != (
                resume_from
            ):
                raise GptlabError(
                    f"{self.run_dir} changed while this run was preparing (another run wrote "
                    "to it); start again to see what it holds now"
                )
            if overwrite:
                clear_run(self.run_dir)
        barrier(context)

        # The same seed on every rank gives every rank the same initial weights; after that each
        # rank draws its own dropout masks.
        torch.manual_seed(cfg.seed)
        self.model = GPT(self.config.model).to(self.device)
        seed_everything(cfg.seed + context.rank)
        # FSDP shards the model in place; the weights of a resumed run go in first (every rank
        # reads the full file), and the optimizer comes after, over the shards.
        self.unsharded_model: GPT | None = None  # rank 0's unsharded copy, for saving (FSDP)
        resume_state = self.load_weights(resume_from) if resume_from is not None else None
        if self.sharded:
            shard_model(self.model)
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.schedule = Schedule.of(cfg)
        self.scaler = grad_scaler(self.device, self.dtype)
        self.train_batches = self.data.train_loader(
            cfg.micro_batch_size, self.config.model.block_size, cfg.seed
        )
        if resume_state is not None:
            self.restore(resume_from, resume_state)
        # Written last: a resume refused on the way (say, another world size) keeps the run's
        # own config.toml, so a later plain --resume still finds it.
        if context.is_main:
            self.config.save(self.run_dir / RUN_CONFIG_FILE)
        # Wrappers come last: checkpoints and samples use self.model, whose names carry no prefixes.
        self.forward_model = torch.compile(self.model) if cfg.compile else self.model
        if not self.sharded:
            self.forward_model = wrap_model(self.forward_model, context, self.device)

        self.num_parameters = self.model.num_parameters()
        self.flops_per_token = flops_per_token(self.config.model, self.num_parameters)
        self.peak_flops = device_peak_flops(self.device)
        self.logger = None
        if context.is_main:
            self.logger = MetricsLogger(
                self.run_dir,
                tensorboard=cfg.tensorboard,
                wandb=cfg.wandb,
                wandb_project=cfg.wandb_project,
                run_config=self.config.to_dict(),
            )

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        cfg, context = self.cfg, self.context
        started = time.perf_counter()
        if context.is_main:
            print(
                describe_run(
                    self.config,
                    num_parameters=self.num_parameters,
                    device=self.device,
                    dtype=self.dtype,
                    world_size=context.world_size,
                    accumulation_steps=self.accumulation_steps,
                    start_step=self.step,
                    run_dir=self.run_dir,
                )
            )
        cost = RunCost(
            cfg.tokens_per_step,
            cfg.max_steps,
            cfg.max_seconds,
            self.step,
            self.flops_per_token,
            on_cpu=self.device.type == "cpu",
        )
        if context.is_main:
            print(cost.plan())
        progress = ProgressLine(
            total_steps=cfg.max_steps,
            total_seconds=cfg.max_seconds,
            start_step=self.step,
            enabled=self.show_progress,
        )
        self.print = progress.write
        try:
            finished = self.budget_spent()
            if finished:
                self.print(
                    f"the budget is already spent at step {self.step}; "
                    "raise train.max_steps or train.max_seconds to go on"
                )
            while not finished:
                finished = self.advance(progress)
                for line in cost.after_step(self.step, self.train_seconds):
                    if context.is_main:
                        self.print(line)
        finally:
            progress.close()
            if self.logger is not None:
                self.logger.close()
        wall = time.perf_counter() - started
        result = TrainResult(
            run_dir=self.run_dir,
            steps=self.step,
            tokens=self.tokens,
            train_seconds=self.train_seconds,
            wall_seconds=wall,
            tokens_per_s=self.tokens / self.train_seconds if self.train_seconds else 0.0,
            num_parameters=self.num_parameters,
            final_train_loss=self.last_train_loss,
            val_loss=self.last_val_loss,
            best_val_loss=self.best_val_loss,
            sample=self.last_sample,
        )
        if context.is_main:
            print(describe_result(result, cfg))
        return result

    def advance(self, progress: ProgressLine) -> bool:
        """One optimizer step and what follows it (logs, evals, checkpoints, samples, on_step).

        Returns True once the budget is spent. benchmarks/bench_train_step.py times this call, so
        what it measures is the loop's whole per-step cost, not the bare forward and backward.
        """
        cfg, context = self.cfg, self.context
        record = self.train_step()
        finished = self.budget_spent()
        if not math.isfinite(record["train_loss"]):
            self.log(record)
            raise GptlabError(
                self.diverged_message(f"the training loss became {record['train_loss']}")
            )
        evaluated = finished or (cfg.eval_every and self.step % cfg.eval_every == 0)
        improved = False
        if evaluated:
            improved = self.evaluate(record, final=finished)
        extra_ran = False
        for extra in self.extra_evals:
            if finished or self.step % extra.every == 0:
                record |= self.run_extra_eval(extra)
                extra_ran = True
        # An extra eval's numbers are always logged, whatever log_every says.
        if evaluated or extra_ran or self.step % cfg.log_every == 0:
            self.log(record)
        progress.update(self.step, self.train_seconds, record)
        if evaluated and context.is_main:
            self.plot()
        # The checkpoint first: nothing optional (a sample) can then cost the run.
        if finished or improved or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
            self.save_checkpoint(record)
        if finished or (cfg.sample_every and self.step % cfg.sample_every == 0):
            self.sample(show=finished)
        if self.on_step is not None and context.is_main:
            self.on_step(record)
        return finished

    def budget_spent(self) -> bool:
        cfg = self.cfg
        by_steps = cfg.max_steps is not None and self.step >= cfg.max_steps
        by_time = cfg.max_seconds is not None and self.train_seconds >= cfg.max_seconds
        return by_steps or by_time

    def train_step(self) -> dict:
        cfg = self.cfg
        step_started = time.perf_counter()
        lr = self.schedule.lr_at(self.step, self.train_seconds)
        set_learning_rate(self.optimizer, lr)
        mean_loss_tensor = accumulate_gradients(
            self.forward_model,
            self.train_batches.next_batch,
            self.accumulation_steps,
            self.autocast,
            self.scaler,
        )
        self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

        # One device-to-host copy for both numbers: each .item() is a sync that stalls the GPU's queue.
        local_loss, grad_norm = torch.stack([mean_loss_tensor, grad_norm.float()]).tolist()
        # Averaged over ranks, so every rank logs, schedules and stops on the same numbers.
        train_loss, step_seconds = mean_across_ranks(
            [local_loss, time.perf_counter() - step_started], self.context, self.device
        )
        self.step += 1
        self.tokens += cfg.tokens_per_step
        self.train_seconds += step_seconds
        self.last_train_loss = train_loss
        tokens_per_s = cfg.tokens_per_step / step_seconds
        record = {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed_s": round(self.train_seconds, 4),
            "lr": lr,
            "train_loss": train_loss,
            "grad_norm": grad_norm,
            "tokens_per_s": tokens_per_s,
        }
        utilisation = mfu(
            tokens_per_s, self.flops_per_token, self.peak_flops, self.context.world_size
        )
        if utilisation is not None:  # only where the GPU's peak is known: no MFU claim on CPU
            record["mfu"] = utilisation
        return record

    def diverged_message(self, what: str) -> str:
        checkpoint = ckpt.latest_checkpoint(self.run_dir)
        kept = (
            f"the last good checkpoint is {checkpoint}"
            if checkpoint
            else "no checkpoint was written yet"
        )
        return (
            f"{what} at step {self.step}, so the run stopped ({kept}); "
            "lower train.lr, raise train.warmup_steps or keep train.grad_clip on"
        )

    # -- measuring -------------------------------------------------------------------------------

    def evaluate(self, record: dict, final: bool) -> bool:
        """Add eval losses to `record`; returns True when the val loss is the best so far."""
        cfg, block_size = self.cfg, self.config.model.block_size
        # The final val loss may cover the whole split (final_eval_tokens=none); the train split is
        # always sampled, since its whole length would cost as much as the training.
        eval_tokens = {
            "train": cfg.eval_tokens,
            "val": cfg.final_eval_tokens if final else cfg.eval_tokens,
        }
        losses = {}
        for split, tokens in eval_tokens.items():
            batches = self.data.eval_batches(split, cfg.micro_batch_size, block_size, tokens)
            losses[split] = mean_loss(
                self.forward_model, batches, self.autocast, self.context, self.device
            )
        record |= {
            "eval_train_loss": losses["train"],
            "val_loss": losses["val"],
            "val_ppl": perplexity(losses["val"]),
        }
        self.last_val_loss = losses["val"]
        # The best checkpoint is chosen on one measure, the val windows every evaluation uses; a
        # final evaluation over more of the split is measured on those windows too, to compare.
        selection = losses["val"]
        if eval_tokens["val"] != cfg.eval_tokens:
            batches = self.data.eval_batches(
                "val", cfg.micro_batch_size, block_size, cfg.eval_tokens
            )
            selection = mean_loss(
                self.forward_model, batches, self.autocast, self.context, self.device
            )
            record["val_loss_sampled"] = selection
        improved = self.best_val_loss is None or selection < self.best_val_loss
        if improved:
            self.best_val_loss = selection
        return improved

    def run_extra_eval(self, extra: PeriodicEval) -> dict:
        # A sharded model's forward is collective: under FSDP every rank runs it, rank 0 keeps it.
        if not (self.context.is_main or self.sharded):
            return {}
        self.model.eval()
        numbers = extra.run(self.model, self.data.tokenizer)
        self.model.train()
        return numbers if self.context.is_main else {}

    def sample(self, show: bool) -> None:
        if not (self.context.is_main or self.sharded):  # as in run_extra_eval
            return
        cfg = self.cfg
        text = sample_text(
            self.model,
            self.data.tokenizer,
            cfg.sample_prompt,
            cfg.sample_tokens,
            cfg.sample_temperature,
            cfg.seed,
        )
        if not self.context.is_main:
            return
        self.last_sample = text
        with open(self.run_dir / SAMPLES_FILE, "a", encoding="utf-8") as f:
            f.write(f"=== step {self.step} ===\n{text}\n\n")
        if show:
            self.print(f"--- sample after {self.step} steps ---\n{text}\n---")

    def plot(self) -> None:
        try:
            plot_runs([self.run_dir], self.run_dir / LOSS_PLOT_FILE)
        except GptlabError as exc:  # matplotlib missing: the run goes on without the picture
            if not self.plot_warned:
                self.print(f"gptlab: no loss plot: {exc}")
                self.plot_warned = True

    def log(self, record: dict) -> None:
        if self.logger is not None:
            self.logger.log(record)

    # -- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self, record: dict) -> None:
        # Weights that overflowed (a finite loss can come before them) are never saved, so the
        # checkpoint the divergence message names always holds a usable model.
        finite = all(torch.isfinite(local_shard(p)).all() for p in self.model.parameters())
        if self.sharded:  # each rank sees only its shards: all must agree before anyone raises
            finite = mean_across_ranks([float(finite)], self.context, self.device)[0] == 1.0
        if not finite:
            raise GptlabError(self.diverged_message("the weights became inf or nan"))
        # Every rank's RNG and loader position are needed to continue exactly; rank 0 writes them all.
        rank_states = [rank_state(self.train_batches)]
        if self.context.enabled:
            rank_states = [None] * self.context.world_size
            torch.distributed.all_gather_object(rank_states, rank_state(self.train_batches))
        model, optimizer_state = self.model, None
        if self.sharded:  # gathered onto rank 0 (collective), so the checkpoint loads in 1 process
            model_state = gathered_model_state(self.model)
            optimizer_state = gathered_optimizer_state(self.model, self.optimizer)
            if self.context.is_main:
                model = self.unsharded_copy(model_state)
        if self.context.is_main:
            ckpt.save_checkpoint(
                self.run_dir,
                model=model,
                tokenizer=self.data.tokenizer,
                info={
                    "step": self.step,
                    "tokens": self.tokens,
                    "elapsed_s": self.train_seconds,
                    "val_loss": record.get("val_loss"),
                    # the measure the best checkpoint is chosen on (see evaluate)
                    "selection_val_loss": record.get("val_loss_sampled", record.get("val_loss")),
                    "best_val_loss": self.best_val_loss,
                },
                training_state=training_state(
                    optimizer_state if self.sharded else self.optimizer.state_dict(),
                    self.scaler,
                    rank_states,
                    self.cfg.distributed,
                ),
                keep_last=self.cfg.keep_last,
            )
        barrier(self.context)

    def unsharded_copy(self, state: dict) -> GPT:
        """Rank 0's plain CPU GPT holding a gathered FSDP state (made once, refilled per save)."""
        if self.unsharded_model is None:
            self.unsharded_model = GPT(self.config.model)
        load_state_checked(self.unsharded_model, state, source="the gathered FSDP state")
        return self.unsharded_model

    def load_weights(self, checkpoint: Path) -> dict:
        """Check that `checkpoint` can be continued and load its weights; returns its training state."""
        state = ckpt.load_training_state(checkpoint)
        check_resumable(
            state,
            str(checkpoint),
            world_size=self.context.world_size,
            optimizer=self.cfg.optimizer,
            distributed=self.cfg.distributed,
        )
        load_state_checked(
            self.model, load_file(str(checkpoint / WEIGHTS_FILE)), source=str(checkpoint)
        )
        return state

    def restore(self, checkpoint: Path, state: dict) -> None:
        """The rest of a resume, once the optimizer exists: its state, RNGs, loader, counters."""
        restore_training_state(
            state,
            rank=self.context.rank,
            optimizer=self.optimizer,
            scaler=self.scaler,
            loader=self.train_batches,
            sharded_model=self.model if self.sharded else None,
        )
        info = ckpt.read_info(checkpoint)
        self.step, self.tokens, self.train_seconds = info["step"], info["tokens"], info["elapsed_s"]
        self.best_val_loss = info["best_val_loss"]
        if self.context.is_main:
            truncate_metrics(self.run_dir, self.step)  # the steps after the checkpoint run again
            truncate_samples(self.run_dir, self.step)
