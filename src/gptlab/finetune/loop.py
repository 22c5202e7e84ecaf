"""The fine-tuning loop shared by classification and instruction tuning.

    for each epoch:  for each batch:  loss = step(batch) -> backward -> clip -> AdamW step
                     then on_epoch_end(epoch, train statistics of that epoch)

The optimizer and schedule are the pretraining ones (gptlab.train.optim): AdamW with weight
decay on 2-D weights only, over the parameters that require gradients; a Schedule of linear
warmup, then a cosine to lr/10 at the end of the last epoch, or of the time budget when `max_seconds` is set and
is further along. A time budget stops after the step that crosses it (the epoch is reported as
partial), so a run fits a fixed wall-clock allowance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from gptlab.errors import GptlabError
from gptlab.finetune.options import FinetuneOptions
from gptlab.train.optim import Schedule, adamw_optimizer, set_learning_rate


@dataclass
class StepResult:
    """What one training step reports: the loss to backpropagate and what it was computed over."""

    loss: torch.Tensor
    weight: int  # examples (classification) or target tokens (instruction tuning) behind the mean
    correct: int | None = None  # correctly classified examples, for a running accuracy


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    loss: float  # mean training loss over the epoch's steps (weighted by StepResult.weight)
    accuracy: float | None
    complete: bool  # False when the time budget ended the epoch early


@dataclass(frozen=True)
class FitResult:
    steps: int
    seconds: float
    epochs: list[EpochStats]
    stopped_by_time: bool


def fit(
    model: torch.nn.Module,
    epoch_batches: Callable[[int], Sequence],
    steps_per_epoch: int,
    step: Callable[[object], StepResult],
    options: FinetuneOptions,
    device: torch.device,
    on_epoch_end: Callable[[EpochStats], None] = lambda stats: None,
) -> FitResult:
    """Train the parameters of `model` that require gradients; see the module docstring.

    epoch_batches(epoch) returns that epoch's batches (already shuffled as wanted), of which there
    are steps_per_epoch (the schedule's length depends on it); step(batch) runs the forward pass
    and returns a StepResult.
    """
    schedule = Schedule(
        lr=options.lr,
        min_lr=options.lr / 10,
        warmup_steps=options.warmup_steps,
        max_steps=options.epochs * steps_per_epoch,
        max_seconds=options.max_seconds,
    )
    optimizer = adamw_optimizer(
        model, lr=options.lr, weight_decay=options.weight_decay, betas=(0.9, 0.999), device=device
    )
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    if not trainable:
        raise GptlabError("nothing to train: every parameter is frozen")

    step_count, train_seconds, stopped = 0, 0.0, False
    history: list[EpochStats] = []
    for epoch in range(options.epochs):
        model.train()
        loss_sum, weight_sum, correct_sum, counts_correct = 0.0, 0, 0, False
        batches = epoch_batches(epoch)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{options.epochs}", unit="batch", leave=False)
        for batch in bar:
            started = time.perf_counter()
            set_learning_rate(optimizer, schedule.lr_at(step_count, train_seconds))
            result = step(batch)
            result.loss.backward()
            if options.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, options.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_count += 1
            train_seconds += time.perf_counter() - started

            loss_sum += result.loss.item() * result.weight
            weight_sum += result.weight
            if result.correct is not None:
                counts_correct = True
                correct_sum += result.correct
            # refresh=False: the bar redraws at its own interval (every 10 s into a log file).
            bar.set_postfix(loss=f"{loss_sum / max(weight_sum, 1):.4f}", refresh=False)
            if options.max_seconds is not None and train_seconds >= options.max_seconds:
                stopped = True
                break
        bar.close()
        n_examples = weight_sum if counts_correct else 0
        stats = EpochStats(
            epoch=epoch + 1,
            loss=loss_sum / max(weight_sum, 1),
            accuracy=correct_sum / n_examples if n_examples else None,
            complete=not stopped,
        )
        history.append(stats)
        model.eval()
        on_epoch_end(stats)
        if stopped:
            break
    return FitResult(
        steps=step_count, seconds=train_seconds, epochs=history, stopped_by_time=stopped
    )
