"""The batch-size ramp: small batches first, the full train.tokens_per_step later.

Early in training the gradient is large and consistent, so a small batch already points the
right way and its steps are cheap; later the gradient is noise-dominated and a large batch pays.
With train.batch_ramp_steps = R and train.batch_ramp_start = S tokens, step k (0-based) trains on

    k <  R:  S + (F - S) * k / R tokens, rounded down to whole sequences (at least S)
    k >= R:  F = train.tokens_per_step

Each process reads its share as micro-batches of at most micro_batch_size sequences; the last
one may be shorter, and each micro-batch's loss is weighted by its share of the step's sequences,
so the gradient is the mean over the step's tokens as without a ramp. The ramp is a function of
the step alone, so a resumed run takes the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPlan:
    """How many sequences each process reads per step, and in which micro-batches."""

    micro_batch_size: int  # sequences per micro-batch (the last of a step may hold fewer)
    full_sequences: int  # sequences per process in a full step
    tokens_per_sequence: int  # block_size x processes: tokens one sequence per process adds
    ramp_steps: int = 0
    start_sequences: int = 0  # sequences per process in the ramp's first step

    def sequences_at(self, step: int) -> int:
        """Sequences per process in optimizer step `step` (0-based)."""
        if step >= self.ramp_steps:
            return self.full_sequences
        grown = (self.full_sequences - self.start_sequences) * step // self.ramp_steps
        return self.start_sequences + grown

    def micro_batches(self, step: int) -> list[int]:
        """The rows of each micro-batch of step `step`."""
        sequences = self.sequences_at(step)
        full, rest = divmod(sequences, self.micro_batch_size)
        return [self.micro_batch_size] * full + ([rest] if rest else [])

    def tokens_at(self, step: int) -> int:
        """Tokens of optimizer step `step`, all processes together."""
        return self.sequences_at(step) * self.tokens_per_sequence

    def tokens_between(self, start: int, end: int) -> int:
        """Tokens of steps start..end-1 (all processes)."""
        ramped = sum(self.tokens_at(k) for k in range(start, min(end, self.ramp_steps)))
        full_steps = max(end - max(start, self.ramp_steps), 0)
        return ramped + full_steps * self.full_sequences * self.tokens_per_sequence
