"""Log-likelihood scoring shared by the evaluations: how probable a model finds given tokens.

Both perplexity (every token of a text) and HellaSwag (the tokens of each candidate ending) come
down to one question asked of a batch of sequences: what log-probability does the model give each
target token, given the tokens before it?
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

IGNORE = -100  # target value for positions that are not scored (cross_entropy's ignore_index)


def target_log_probs(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets[b, t] | inputs[b, : t + 1]) for every position, 0 where the target is IGNORE.

    inputs, targets: (B, T) token ids; returns (B, T) float32 log-probabilities.
    """
    logits, _ = model(inputs)  # (B, T, vocab_size)
    # float32 whatever the model computed in (autocast), so sums over long texts stay exact enough.
    nll = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none"
    )
    return -nll.view_as(targets)


def right_pad(rows: Sequence[Sequence[int]], value: int, device: torch.device) -> torch.Tensor:
    """Stack rows of different lengths into a (B, T_max) tensor, filling the end with `value`.

    Right padding is free for a causal model: a real token attends only to earlier positions,
    which are all real, so padding after it never changes its logits. Callers mark the padded
    targets IGNORE so they are not scored.
    """
    longest = max(len(row) for row in rows)
    out = torch.full((len(rows), longest), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out.to(device)
