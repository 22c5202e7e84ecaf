"""The training loop: `train(config, out) -> TrainResult`.

`build_trainer` makes each part once, in order (run folder, data, model, optimizer, schedule,
loader, resumed state, logger), and hands them to a `Trainer` whose fields are all known from
construction; how this process takes part in a multi-process run (DDP, FSDP) is one
`Parallelism` object (train/distributed.py), so the loop holds no rank or FSDP branches.

One optimizer step:

    lr from the schedule (warmup, then cosine, or stable then a linear cooldown, to min_lr)
    accumulation_steps x: next micro-batch -> forward under autocast -> (loss / accumulation).backward()
                          (DDP or FSDP average gradients across processes on the last micro-step only;
                          a batch-size ramp makes the early steps fewer micro-batches, train/batch_ramp.py)
    unscale (float16 only) -> clip the global grad norm -> AdamW step -> zero the gradients
    (train.weight_average) fold the new weights into the average (train/weight_average.py)

and around it: evaluation on fixed windows of both splits, samples, checkpoints (the newest few
and the best), metrics.jsonl, a live progress line and the loss-curve PNG. `gptlab train` is
this function behind a command line; the experiment runner calls it directly.

The budget counts training seconds only: time spent evaluating, sampling and checkpointing is
left out, so extra measurement never changes what a run with a wall-clock budget learns; so is
torch.compile's warm-up, done on dummy batches before the clock starts (train/compile_warmup.py).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch
from safetensors.torch import load_file

from gptlab.checkpoints import run as ckpt
from gptlab.checkpoints.model_folder import WEIGHTS_FILE
from gptlab.device import use_threads
from gptlab.errors import GptlabError
from gptlab.eval.hellaswag import hellaswag_training_eval
from gptlab.inference.config import GenerationConfig
from gptlab.model.gpt import GPT
from gptlab.model.params import require_model_fits
from gptlab.model.state import load_state_checked
from gptlab.optional import import_optional
from gptlab.rng import seed_everything
from gptlab.train.batch_ramp import BatchPlan
from gptlab.train.compile_warmup import CompileUnavailable, warm_up
from gptlab.train.config import RunConfig, TrainConfig
from gptlab.train.cost import RunCost
from gptlab.train.data_checks import training_data_warnings
from gptlab.train.distributed import Parallelism, maybe_no_sync, start_parallelism
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
from gptlab.train.precision import (
    autocast_context,
    enable_tf32,
    fall_back_from_emulated_bf16,
    grad_scaler,
    resolve_dtype,
)
from gptlab.train.resume import check_resumable, rank_state, restore_training_state, training_state
from gptlab.train.run_folder import (
    RUN_CONFIG_FILE,
    SAMPLES_FILE,
    claim_run_folder,
    clear_run,
    truncate_samples,
)
from gptlab.train.training_data import TrainingData, wants_shard_check
from gptlab.train.weight_average import WeightAverage, raw_weights


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
    # train.weight_average: the val loss of the raw last weights, beside val_loss (the average's)
    val_loss_raw: float | None = None
    # torch.compile's warm-up, before the clock (not in train_seconds)
    compile_warmup_seconds: float = 0.0


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
    config.normalize().validate()
    extra_evals = list(extra_evals) + configured_extra_evals(config)
    parallel = start_parallelism(config.train.device, config.train.distributed)
    threads_before = torch.get_num_threads()
    use_threads(config.train.threads, "train.threads")
    trainer = None
    try:
        trainer = build_trainer(
            config,
            Path(out),
            parallel,
            resume=resume,
            overwrite=overwrite,
            extra_evals=extra_evals,
            on_step=on_step,
            show_progress=show_progress,
        )
        return trainer.fit()
    except torch.OutOfMemoryError:
        raise GptlabError(
            f"out of GPU memory with train.micro_batch_size={config.train.micro_batch_size}; lower it "
            "(gradient accumulation keeps train.tokens_per_step unchanged), or shrink the model or block_size"
        ) from None
    finally:
        if trainer is not None:
            trainer.release()
        torch.set_num_threads(threads_before)  # a library call leaves the process as it found it
        parallel.close()


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


def accumulate_gradients(
    model, next_batch, micro_batches: list[int], autocast, scaler
) -> torch.Tensor:
    """Forward and backward over micro-batches of `micro_batches[i]` rows; returns the step's
    mean loss (detached). `next_batch(rows)` gives each (x, y).

    Each micro-batch's loss is weighted by its share of the step's rows (1 / steps when they are
    equal, as they are without a batch ramp), so the summed gradients are the gradient of the
    mean loss over all the step's tokens, as one big batch would give. Under DDP the gradients
    are averaged across processes on the last micro-step only.
    """
    steps, rows_in_step = len(micro_batches), sum(micro_batches)
    equal = len(set(micro_batches)) == 1
    loss_sum = None
    for micro_step, rows in enumerate(micro_batches):
        x, y = next_batch(rows)  # (rows, block_size) each
        with maybe_no_sync(model, sync=micro_step == steps - 1), autocast:
            _, loss = model(x, y)
        share = loss / steps if equal else loss * (rows / rows_in_step)
        scaler.scale(share).backward()
        part = loss.detach() if equal else share.detach()
        loss_sum = part if loss_sum is None else loss_sum + part
    return loss_sum / steps if equal else loss_sum


def check_sample_settings(train_config: TrainConfig, tokenizer) -> None:
    """The samples' prompt and temperature, checked before training (a sample comes at the end)."""
    try:
        tokenizer.encode(train_config.sample_prompt)
    except GptlabError as exc:
        raise GptlabError(
            f"train.sample_prompt {train_config.sample_prompt!r} cannot be encoded: {exc}"
        ) from None
    GenerationConfig(
        max_new_tokens=train_config.sample_tokens, temperature=train_config.sample_temperature
    )


def require_optional_loggers(train_config: TrainConfig) -> None:
    """Missing optional loggers are reported before anything is written."""
    if train_config.tensorboard:
        import_optional("tensorboard", "tensorboard")
    if train_config.wandb:
        import_optional("wandb", "wandb")


def weight_average_of(train_config: TrainConfig) -> WeightAverage | None:
    """The run's weight average (train.weight_average), or None for the raw weights."""
    if train_config.weight_average == "none":
        return None
    return WeightAverage(
        train_config.weight_average,
        decay=train_config.weight_average_decay,
        tail=train_config.weight_average_tail,
    )


def build_trainer(
    config: RunConfig,
    run_dir: Path,
    parallel: Parallelism,
    *,
    resume: bool = False,
    overwrite: bool = False,
    extra_evals: Sequence[PeriodicEval] = (),
    on_step: Callable[[dict], None] | None = None,
    show_progress: bool = True,
) -> Trainer:
    """Every part of a run, made once and in order, handed to a Trainer ready to `fit()`."""
    # A copy: the data fills in vocab_size below, and the caller's config must stay what the
    # caller built (gptlab experiment compares it with finished runs).
    config = copy.deepcopy(config)
    train_config = config.train
    enable_tf32()
    require_optional_loggers(train_config)
    claim = claim_run_folder(
        run_dir, config, resume=resume, overwrite=overwrite, is_main=parallel.is_main
    )
    resume_from = claim.resume_from
    try:
        dtype, notice = fall_back_from_emulated_bf16(
            resolve_dtype(train_config.dtype, parallel.device), parallel.device
        )
        if notice and parallel.is_main:
            print(notice)
        accumulation_steps = config.accumulation_steps(parallel.world_size)
        data = TrainingData.open(
            config.data, parallel.context, parallel.device, verify_shards=wants_shard_check(config)
        )
        if parallel.is_main and resume_from is None:
            for message in training_data_warnings(
                data.splits, train_config.tokens_per_step, train_config.max_steps
            ):
                print(f"gptlab train: warning: {message}", file=sys.stderr)
        # The data decides the vocabulary (a character vocabulary is whatever the corpus holds);
        # replace() checks the new model config, as construction does.
        config.model = dataclasses.replace(config.model, vocab_size=data.tokenizer.vocab_size)
        # FSDP builds the whole model on each device before sharding it, so the full weights
        # must fit there; its gradients and optimizer state are split over the processes.
        require_model_fits(config.model, parallel.device, training=not parallel.sharded)
        check_sample_settings(train_config, data.tokenizer)
        if overwrite and parallel.is_main:
            clear_run(run_dir)
        parallel.barrier()

        # The same seed on every rank gives every rank the same initial weights; after that each
        # rank draws its own dropout masks.
        torch.manual_seed(train_config.seed)
        model = GPT(config.model).to(parallel.device)
        seed_everything(train_config.seed + parallel.context.rank)
        # FSDP shards the model in place; the weights of a resumed run go in first (every rank
        # reads the full file), and the optimizer comes after, over the shards.
        resume_state = None
        if resume_from is not None:
            resume_state = load_resumed_weights(model, resume_from, parallel, train_config)
        parallel.shard(model)
        optimizer = build_optimizer(model, train_config, parallel.device)
        scaler = grad_scaler(parallel.device, dtype)
        train_batches = data.train_loader(
            train_config.micro_batch_size, config.model.block_size, train_config.seed
        )
        weight_average = weight_average_of(train_config)
        counters = Counters()
        if resume_state is not None:
            counters = restore_training(
                run_dir,
                resume_from,
                resume_state,
                parallel,
                optimizer,
                scaler,
                train_batches,
                model,
                weight_average,
            )
        # Written last: a resume refused on the way (say, another world size) keeps the run's
        # own config.toml, so a later plain --resume still finds it.
        if parallel.is_main:
            config.save(run_dir / RUN_CONFIG_FILE)
        num_parameters = model.num_parameters()
        logger = None
        if parallel.is_main:
            logger = MetricsLogger(
                run_dir,
                tensorboard=train_config.tensorboard,
                wandb=train_config.wandb,
                wandb_project=train_config.wandb_project,
                run_config=config.to_dict(),
            )
        return Trainer(
            config=config,
            run_dir=run_dir,
            run_lock=claim.lock,
            parallel=parallel,
            data=data,
            model=model,
            forward_model=parallel.forward_model(model, train_config.compile),
            optimizer=optimizer,
            schedule=Schedule.of(train_config),
            scaler=scaler,
            train_batches=train_batches,
            dtype=dtype,
            autocast=autocast_context(parallel.device, dtype),
            accumulation_steps=accumulation_steps,
            batches=BatchPlan(
                micro_batch_size=train_config.micro_batch_size,
                full_sequences=accumulation_steps * train_config.micro_batch_size,
                tokens_per_sequence=config.model.block_size * parallel.world_size,
                ramp_steps=train_config.batch_ramp_steps,
                start_sequences=config.batch_ramp_sequences(parallel.world_size) or 0,
            ),
            weight_average=weight_average,
            num_parameters=num_parameters,
            flops_per_token=flops_per_token(config.model, num_parameters),
            peak_flops=device_peak_flops(parallel.device),
            logger=logger,
            progress=ProgressLine(
                total_steps=train_config.max_steps,
                total_seconds=train_config.max_seconds,
                start_step=counters.step,
                enabled=show_progress and parallel.is_main,
            ),
            extra_evals=list(extra_evals),
            on_step=on_step,
            **dataclasses.asdict(counters),
        )
    except BaseException:
        claim.give_up(run_dir)
        raise


def load_resumed_weights(
    model: GPT, checkpoint: Path, parallel: Parallelism, train_config: TrainConfig
) -> dict:
    """Check that `checkpoint` can be continued and load its weights; returns its training state."""
    state = ckpt.load_training_state(checkpoint)
    check_resumable(
        state,
        str(checkpoint),
        world_size=parallel.world_size,
        optimizer=train_config.optimizer,
        distributed=train_config.distributed,
    )
    load_state_checked(model, load_file(str(checkpoint / WEIGHTS_FILE)), source=str(checkpoint))
    if "raw_weights" in state:  # the run's last checkpoint holds the average; training goes on
        load_state_checked(model, state["raw_weights"], source=str(checkpoint))  # from the raw ones
    return state


def restore_training(
    run_dir: Path,
    checkpoint: Path,
    state: dict,
    parallel: Parallelism,
    optimizer,
    scaler,
    loader,
    model,
    weight_average: WeightAverage | None,
) -> Counters:
    """The rest of a resume, once the optimizer exists: its state, RNGs, loader, the weight
    average (a run that did not average before starts its average now), counters."""
    restore_training_state(
        state,
        rank=parallel.context.rank,
        optimizer=optimizer,
        scaler=scaler,
        loader=loader,
        sharded_model=model if parallel.sharded else None,
    )
    if weight_average is not None and "weight_average" in state:
        weight_average.load_state_dict(state["weight_average"], parallel.device)
    info = ckpt.read_info(checkpoint)
    if parallel.is_main:
        truncate_metrics(run_dir, info["step"])  # the steps after the checkpoint run again
        truncate_samples(run_dir, info["step"])
    return Counters(
        step=info["step"],
        tokens=info["tokens"],
        train_seconds=info["elapsed_s"],
        best_val_loss=info["best_val_loss"],
    )


@dataclass
class Counters:
    """Where the run stands; saved in every checkpoint and restored on resume."""

    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    best_val_loss: float | None = None


@dataclass
class Trainer:
    """A run ready to train: every part made by build_trainer, the loop in fit()."""

    config: RunConfig  # vocab_size filled in from the data
    run_dir: Path
    run_lock: IO[str] | None  # the open, locked RUN/.gptlab.lock on rank 0 while training
    parallel: Parallelism
    data: TrainingData
    model: GPT  # the plain model: checkpoints, samples, extra evals
    forward_model: torch.nn.Module  # what steps and evals call: model, compiled and/or in DDP
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    train_batches: object  # the TokenLoader of the train split (this rank's share)
    dtype: torch.dtype
    autocast: object
    accumulation_steps: int  # micro-steps of a full step
    batches: BatchPlan  # the sequences and micro-batches of each step (a batch ramp's too)
    weight_average: WeightAverage | None  # train.weight_average, None when off
    num_parameters: int
    flops_per_token: float
    peak_flops: float | None
    logger: MetricsLogger | None  # rank 0 only
    progress: ProgressLine
    extra_evals: list[PeriodicEval]
    on_step: Callable[[dict], None] | None
    # Where the run stands (Counters), saved in every checkpoint.
    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    last_train_loss: float | None = None
    last_sample: str | None = None
    last_val_loss_raw: float | None = None
    compile_warmup_seconds: float = 0.0
    # the raw weights once the average replaced them in the model (the final checkpoint keeps both)
    raw_weights: dict | None = None
    plot_warned: bool = False
    released: bool = field(default=False, repr=False)

    def release(self) -> None:
        """Close the logger and the progress line, and let go of the run folder."""
        if self.released:
            return
        self.released = True
        self.progress.close()
        if self.logger is not None:
            self.logger.close()
        if self.run_lock is not None:
            self.run_lock.close()

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        train_config = self.config.train
        started = time.perf_counter()
        if self.parallel.is_main:
            print(
                describe_run(
                    self.config,
                    num_parameters=self.num_parameters,
                    device=self.parallel.device,
                    dtype=self.dtype,
                    world_size=self.parallel.world_size,
                    accumulation_steps=self.accumulation_steps,
                    start_step=self.step,
                    run_dir=self.run_dir,
                )
            )
        cost = RunCost(
            train_config.tokens_per_step,
            train_config.max_steps,
            train_config.max_seconds,
            self.step,
            self.flops_per_token,
            on_cpu=self.parallel.device.type == "cpu",
            batches=self.batches,
        )
        if self.parallel.is_main:
            print(cost.plan())
        if train_config.compile and not self.budget_spent():
            self.compile_or_fall_back()
        try:
            finished = self.budget_spent()
            if finished:
                self.progress.write(
                    f"the budget is already spent at step {self.step}; "
                    "raise train.max_steps or train.max_seconds to go on"
                )
            tokens_at_start = self.tokens
            while not finished:
                finished = self.advance()
                trained = self.tokens - tokens_at_start
                for line in cost.after_step(self.step, self.train_seconds, trained):
                    if self.parallel.is_main:
                        self.progress.write(line)
        finally:
            self.progress.close()
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
            val_loss_raw=self.last_val_loss_raw,
            compile_warmup_seconds=self.compile_warmup_seconds,
        )
        if self.parallel.is_main:
            print(describe_result(result, train_config))
        return result

    def compile_or_fall_back(self) -> None:
        """torch.compile's warm-up before the clock; where the backend cannot compile (no C++
        compiler on CPU), the run goes on uncompiled with a one-line notice instead of failing."""
        train_config = self.config.train
        try:
            self.compile_warmup_seconds = warm_up(
                self.forward_model,
                self.model,
                train_rows=[
                    rows
                    for step in range(self.step, max(self.step, self.batches.ramp_steps) + 1)
                    for rows in self.batches.micro_batches(step)
                ],
                eval_rows=train_config.micro_batch_size,
                block_size=self.config.model.block_size,
                device=self.parallel.device,
                autocast=self.autocast,
            )
        except CompileUnavailable as exc:
            self.forward_model = self.parallel.forward_model(self.model, compile=False)
            notice = (
                f"compile: torch.compile cannot build the model here ({exc}); training uncompiled "
                "(the same losses, fewer tokens/s; train.compile=false skips the try)"
            )
        else:
            notice = (
                f"compile: torch.compile warmed up in {self.compile_warmup_seconds:.1f} s on "
                "dummy batches; the training clock starts now"
            )
        if self.parallel.is_main:
            print(notice)

    def advance(self) -> bool:
        """One optimizer step and what follows it (logs, evals, checkpoints, samples, on_step).

        Returns True once the budget is spent. benchmarks/bench_train_step.py times this call, so
        what it measures is the loop's whole per-step cost, not the bare forward and backward.
        """
        train_config = self.config.train
        record = self.train_step()
        finished = self.budget_spent()
        if not math.isfinite(record["train_loss"]):
            self.log(record)
            raise GptlabError(
                self.diverged_message(f"the training loss became {record['train_loss']}")
            )
        evaluated = finished or due(self.step, train_config.eval_every)
        if finished and self.weight_average is not None:
            self.use_average(record)
        if finished and self.compile_warmup_seconds:
            record["compile_warmup_s"] = round(self.compile_warmup_seconds, 2)
        improved = False
        if evaluated:
            improved = self.evaluate(record, final=finished)
        extra_ran = False
        for extra in self.extra_evals:
            if finished or self.step % extra.every == 0:
                record |= self.run_extra_eval(extra)
                extra_ran = True
        # An extra eval's numbers are always logged, whatever log_every says.
        if evaluated or extra_ran or self.step % train_config.log_every == 0:
            self.log(record)
        self.progress.update(self.step, self.train_seconds, record)
        if evaluated and self.parallel.is_main:
            self.plot()
        # The checkpoint first: nothing optional (a sample) can then cost the run.
        if finished or improved or due(self.step, train_config.checkpoint_every):
            self.save_checkpoint(record)
        if finished or due(self.step, train_config.sample_every):
            self.sample(show=finished)
        if self.on_step is not None and self.parallel.is_main:
            self.on_step(record)
        return finished

    def use_average(self, record: dict) -> None:
        """At the end: score the raw weights, then put the average in the model, so the final
        evaluation, checkpoint and sample are the average's (train/weight_average.py)."""
        final_tokens = self.config.train.final_eval_tokens
        self.last_val_loss_raw = self.eval_loss("val", final_tokens)
        record["val_loss_raw"] = self.last_val_loss_raw
        record["weights_averaged"] = self.weight_average.count
        self.raw_weights = raw_weights(self.model)
        self.weight_average.copy_into(self.model)

    def budget_spent(self) -> bool:
        train_config = self.config.train
        by_steps = train_config.max_steps is not None and self.step >= train_config.max_steps
        by_time = (
            train_config.max_seconds is not None and self.train_seconds >= train_config.max_seconds
        )
        return by_steps or by_time

    def train_step(self) -> dict:
        train_config = self.config.train
        step_started = time.perf_counter()
        lr = self.schedule.lr_at(self.step, self.train_seconds)
        set_learning_rate(self.optimizer, lr)
        mean_loss_tensor = accumulate_gradients(
            self.forward_model,
            self.train_batches.next_batch,
            self.batches.micro_batches(self.step),
            self.autocast,
            self.scaler,
        )
        self.scaler.unscale_(self.optimizer)
        max_norm = train_config.grad_clip if train_config.grad_clip > 0 else math.inf
        grad_norm = self.parallel.clip_grad_norm(self.model, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        # Inside the step's time: averaging is part of training. Whether this step counts is read
        # from counters every rank shares (the time before the step), so ranks never disagree.
        average = self.weight_average
        if average is not None and average.wants(
            self.schedule.progress(self.step + 1, self.train_seconds)
        ):
            average.update(self.model)
        step_tokens = self.batches.tokens_at(self.step)

        # One device-to-host copy for both numbers: each .item() is a sync that stalls the GPU's queue.
        local_loss, grad_norm = torch.stack([mean_loss_tensor, grad_norm.float()]).tolist()
        # Averaged over ranks, so every rank logs, schedules and stops on the same numbers.
        train_loss, step_seconds = self.parallel.mean(
            [local_loss, time.perf_counter() - step_started]
        )
        self.step += 1
        self.tokens += step_tokens
        self.train_seconds += step_seconds
        self.last_train_loss = train_loss
        tokens_per_s = step_tokens / step_seconds
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
            tokens_per_s, self.flops_per_token, self.peak_flops, self.parallel.world_size
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
        train_config = self.config.train
        # The final val loss may cover the whole split (final_eval_tokens=none); the train split is
        # always sampled, since its whole length would cost as much as the training.
        eval_tokens = {
            "train": train_config.eval_tokens,
            "val": train_config.final_eval_tokens if final else train_config.eval_tokens,
        }
        losses = {split: self.eval_loss(split, tokens) for split, tokens in eval_tokens.items()}
        record |= {
            "eval_train_loss": losses["train"],
            "val_loss": losses["val"],
            "val_ppl": perplexity(losses["val"]),
        }
        self.last_val_loss = losses["val"]
        # The best checkpoint is chosen on one measure, the val windows every evaluation uses; a
        # final evaluation over more of the split is measured on those windows too, to compare.
        selection = losses["val"]
        if eval_tokens["val"] != train_config.eval_tokens:
            selection = self.eval_loss("val", train_config.eval_tokens)
            record["val_loss_sampled"] = selection
        improved = self.best_val_loss is None or selection < self.best_val_loss
        if improved:
            self.best_val_loss = selection
        return improved

    def eval_loss(self, split: str, tokens: int | None) -> float:
        """Mean loss over `tokens` tokens of fixed windows of `split` (None: the whole split)."""
        batches = self.data.eval_batches(
            split, self.config.train.micro_batch_size, self.config.model.block_size, tokens
        )
        return mean_loss(
            self.forward_model, batches, self.autocast, self.parallel.context, self.parallel.device
        )

    def run_extra_eval(self, extra: PeriodicEval) -> dict:
        if not self.parallel.runs_model_here:
            return {}
        self.model.eval()
        numbers = extra.run(self.model, self.data.tokenizer)
        self.model.train()
        return numbers if self.parallel.is_main else {}

    def sample(self, show: bool) -> None:
        if not self.parallel.runs_model_here:
            return
        train_config = self.config.train
        text = sample_text(
            self.model,
            self.data.tokenizer,
            train_config.sample_prompt,
            train_config.sample_tokens,
            train_config.sample_temperature,
            train_config.seed,
        )
        if not self.parallel.is_main:
            return
        self.last_sample = text
        with open(self.run_dir / SAMPLES_FILE, "a", encoding="utf-8") as f:
            f.write(f"=== step {self.step} ===\n{text}\n\n")
        if show:
            self.progress.write(f"--- sample after {self.step} steps ---\n{text}\n---")

    def plot(self) -> None:
        try:
            plot_runs([self.run_dir], self.run_dir / LOSS_PLOT_FILE)
        except GptlabError as exc:  # matplotlib missing: the run goes on without the picture
            if not self.plot_warned:
                self.progress.write(f"gptlab: no loss plot: {exc}")
                self.plot_warned = True

    def log(self, record: dict) -> None:
        if self.logger is not None:
            self.logger.log(record)

    # -- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self, record: dict) -> None:
        # Weights that overflowed (a finite loss can come before them) are never saved, so the
        # checkpoint the divergence message names always holds a usable model.
        if not self.parallel.all_finite(self.model):
            raise GptlabError(self.diverged_message("the weights became inf or nan"))
        # Every rank's RNG and loader position are needed to continue exactly; rank 0 writes them all.
        rank_states = self.parallel.gather(rank_state(self.train_batches))
        model, optimizer_state = self.parallel.checkpoint_parts(
            self.model, self.optimizer, lambda: GPT(self.config.model)
        )
        if self.parallel.is_main:
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
                    optimizer_state,
                    self.scaler,
                    rank_states,
                    self.config.train.distributed,
                    weight_average=self.weight_average,
                    raw_weights=self.raw_weights,
                ),
                keep_last=self.config.train.keep_last,
            )
        self.parallel.barrier()


def due(step: int, every: int) -> bool:
    """Whether something done every `every` steps (0: never) is due at `step`."""
    return bool(every) and step % every == 0
