"""Attention patterns: who attends to whom, for every layer and head.

The weights come from the `blocks.i.attn.hook_pattern` hook points (caching them switches the
layer to the explicit attention path, since the fused kernel never materialises the weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from gptlab.plotting import attention_grid
from gptlab.tables import format_table, quoted

PATTERN_HOOKS = ["blocks.*.attn.hook_pattern"]


@torch.no_grad()
def attention_patterns(model, idx: torch.Tensor) -> torch.Tensor:
    """Attention weights of the first sequence in idx: (n_layer, n_head, T, T), on the CPU."""
    _, cache = model.run_with_cache(idx[:1], names=PATTERN_HOOKS)
    return patterns_from_cache(cache, model.config.n_layer)


def patterns_from_cache(cache: dict[str, torch.Tensor], n_layer: int) -> torch.Tensor:
    """The (n_layer, n_head, T, T) weights of the first sequence in a run_with_cache cache that
    holds PATTERN_HOOKS (so a caller caching more for other tools runs the model once)."""
    return (
        torch.stack([cache[f"blocks.{i}.attn.hook_pattern"][0] for i in range(n_layer)])
        .float()
        .cpu()
    )


def save_attention_grid(
    path: str | Path,
    patterns: torch.Tensor,
    tokens: Sequence[str],
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
) -> Path:
    """A PNG grid of the chosen layers (rows) and heads (columns); all of them by default."""
    n_layer, n_head = patterns.shape[:2]
    layers = list(range(n_layer)) if layers is None else list(layers)
    heads = list(range(n_head)) if heads is None else list(heads)
    chosen = patterns[layers][:, heads]  # (len(layers), len(heads), T, T)
    return attention_grid(path, chosen.numpy(), layers=layers, heads=heads, tokens=tokens)


def attention_summary_table(
    patterns: torch.Tensor,
    tokens: Sequence[str],
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
) -> str:
    """One row per head: where the last token looks, and the head's average attention to the
    previous token, the first token and itself (previous-token heads and sinks stand out)."""
    n_layer, n_head, T, _ = patterns.shape
    rows = []
    for layer in layers or range(n_layer):
        for head in heads or range(n_head):
            p = patterns[layer, head]  # (T, T)
            strongest = int(p[-1].argmax())
            rows.append(
                [
                    layer,
                    head,
                    f"{quoted(tokens[strongest])} @{strongest}",
                    float(p[-1, strongest]),
                    float(p.diagonal(-1).mean()) if T > 1 else float("nan"),
                    float(p[:, 0].mean()),
                    float(p.diagonal().mean()),
                ]
            )
    headers = ["layer", "head", "last token attends most to", "weight"]
    return format_table(headers + ["mean to previous", "mean to first", "mean to self"], rows)
