"""What a training run will cost on this machine, said before it is spent.

Before the first step: the tokens the run plans to train on and the compute that takes (about 6
FLOPs per parameter per token, `gptlab.train.flops`). After the first steps: the tokens per
second actually measured here, and so how long the run will take; the progress bar's ETA keeps
that up to date from then on. A run that would take more than a few hours on a CPU gets one
more line: where the 10-minute laptop recipe is, and that a GPU does the same in minutes.

The first step is slow (allocations, warm-up), so the rate is taken after MEASURED_STEPS steps,
or after the first step if that alone took MEASURED_SECONDS (a step that slow leaves no doubt).
With a batch-size ramp (train/batch_ramp.py) the steps differ in size, so tokens are counted step
by step and the run's length is its tokens over the measured tokens per second.
"""

from __future__ import annotations

from dataclasses import dataclass

from gptlab.train.batch_ramp import BatchPlan

MEASURED_STEPS = 3
MEASURED_SECONDS = 30.0
CPU_HOURS_POINTER = 3.0  # a CPU run longer than this is pointed at the laptop preset or a GPU
LAPTOP_POINTER = (
    "that is hours on a CPU: `gptlab train --preset prose-cpu data.source=FILE` is the 10-minute "
    "laptop recipe for English (docs/pretraining.md), or run this on a GPU (docs/gpu.md)"
)


def human_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def human_tokens(tokens: float) -> str:
    return f"{tokens:,.0f} tokens" if tokens < 1e6 else f"{tokens / 1e6:,.1f}M tokens"


@dataclass
class RunCost:
    """The cost lines of one run: `plan()` before it starts, `after_step()` once measured."""

    tokens_per_step: int
    max_steps: int | None
    max_seconds: float | None
    start_step: int
    flops_per_token: float
    on_cpu: bool
    batches: BatchPlan | None = None  # a batch ramp's plan (None: every step is tokens_per_step)
    reported: bool = False

    @property
    def ramped(self) -> bool:
        return self.batches is not None and self.batches.ramp_steps > self.start_step

    @property
    def planned_tokens(self) -> int | None:
        if self.max_steps is None:
            return None
        if self.ramped:
            return self.batches.tokens_between(self.start_step, self.max_steps)
        return max(self.max_steps - self.start_step, 0) * self.tokens_per_step

    def plan(self) -> str:
        """The line before the first step: what the budget asks for."""
        tokens = self.planned_tokens
        if tokens is None:
            return (
                f"cost: a {human_duration(self.max_seconds)} budget; the tokens it buys are measured "
                "after the first steps"
            )
        steps = self.max_steps - self.start_step
        per_step = f"{self.tokens_per_step:,} tokens"
        if self.ramped:
            first = self.batches.tokens_at(self.start_step)
            per_step = f"{first:,} tokens rising to {self.tokens_per_step:,} over {self.batches.ramp_steps:,} steps"
        return (
            f"cost: {steps:,} steps x {per_step} = {human_tokens(tokens)}, "
            f"{tokens * self.flops_per_token:.2g} FLOPs; the time it takes here is measured "
            "after the first steps"
        )

    def after_step(self, step: int, train_seconds: float, tokens: int | None = None) -> list[str]:
        """The lines to print once the first steps are measured (then never again).

        tokens: trained since the start (default: the steps x tokens_per_step)."""
        done = step - self.start_step
        if self.reported or done < 1 or train_seconds <= 0:
            return []
        if done < MEASURED_STEPS and train_seconds < MEASURED_SECONDS:
            return []
        self.reported = True
        tokens = done * self.tokens_per_step if tokens is None else tokens
        tokens_per_s = tokens / train_seconds
        seconds_per_step = train_seconds / done
        run_seconds = []
        if self.ramped and self.max_steps is not None:  # steps grow: the plan's tokens at this rate
            run_seconds.append(self.planned_tokens / tokens_per_s)
        elif self.max_steps is not None:
            run_seconds.append((self.max_steps - self.start_step) * seconds_per_step)
        if self.max_seconds is not None:
            run_seconds.append(self.max_seconds)
        total = min(run_seconds)
        tokens = total * tokens_per_s
        lines = [
            f"cost: measured {tokens_per_s:,.0f} tokens/s over the first {done} step(s) "
            f"({seconds_per_step:.2f} s/step): the run takes about {human_duration(total)} of "
            f"training here for {human_tokens(tokens)} (ETA in the progress bar)"
        ]
        if self.on_cpu and total > CPU_HOURS_POINTER * 3600:
            lines.append(f"cost: {LAPTOP_POINTER}")
        return lines
