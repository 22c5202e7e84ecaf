"""Log-likelihood scoring shared by the evaluations: how probable a model finds given tokens.

Both perplexity (every token of a text) and HellaSwag (the tokens of each candidate ending) come
down to one question asked of a batch of sequences: what log-probability does the model give each
target token, given the tokens before it?
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gptlab.model.batching import IGNORE_INDEX


def target_log_probs(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets[b, t] | inputs[b, : t + 1]) for every position, 0 where the target is IGNORE_INDEX.

    inputs, targets: (B, T) token ids; returns (B, T) float32 log-probabilities.
    """
    logits, _ = model(inputs)  # (B, T, vocab_size)
    # float32 whatever the model computed in (autocast), so sums over long texts stay exact enough.
    nll = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return -nll.view_as(targets)
