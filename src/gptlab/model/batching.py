"""Batches of sequences of different lengths for a causal model: right padding, ignored targets.

Right padding is free for a causal model: a real token attends only to earlier positions, which
are all real, so the padding after it never changes its logits and no attention mask is needed.
Targets that must not count (padding, a prompt, context already scored) are set to IGNORE_INDEX,
which GPT.forward's loss and the evaluations' scoring skip.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100  # cross_entropy's ignore_index: a target position that is not scored


def right_pad(
    rows: Sequence[Sequence[int]], value: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Stack rows of different lengths into a (B, T_max) long tensor, filling the end with `value`."""
    longest = max(len(row) for row in rows)
    out = torch.full((len(rows), longest), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out.to(device)
