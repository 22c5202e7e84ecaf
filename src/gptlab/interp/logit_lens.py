"""The logit lens: what would the model predict if it stopped after block i?

The residual stream entering block 0 (the embeddings) and leaving each block is read from the hook
points and decoded the way the model decodes its last one: the final LayerNorm, recomputed on that
residual, then the unembedding. The last stage is exactly the model's own logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.interp.tokens import token_label
from gptlab.plotting import heatmap
from gptlab.tables import format_number, format_table, quoted
from gptlab.tokenizers.base import Tokenizer


def lens_stage_names(n_layer: int) -> list[str]:
    """One name per residual stream read: 'embed', then 'block 0' ... (the stream after block i)."""
    return ["embed"] + [f"block {i}" for i in range(n_layer)]


def residual_hook_names(n_layer: int) -> list[str]:
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layer)]


def decode_residual(model, resid: torch.Tensor) -> torch.Tensor:
    """Logits the model would produce from this residual stream: ln_f, then the head. (..., V)"""
    logits = model.lm_head(model.ln_f(resid))
    return logits[..., : model.config.vocab_size]  # vocabulary padding never leaves the model


@dataclass
class LogitLens:
    stages: list[str]  # n_layer + 1 names, see lens_stage_names
    top_ids: torch.Tensor  # (stages, T, k) most likely next tokens at each stage and position
    top_probs: torch.Tensor  # (stages, T, k)
    next_token_probs: torch.Tensor  # (stages, T - 1) probability of the token that actually follows

    def to_dict(self) -> dict:
        return {
            "stages": self.stages,
            "top_ids": self.top_ids.tolist(),
            "top_probs": self.top_probs.tolist(),
            "next_token_probs": self.next_token_probs.tolist(),
        }


@torch.no_grad()
def logit_lens(model, idx: torch.Tensor, k: int = 5) -> LogitLens:
    """Top-k predictions at every stage and position for the sequence idx (1, T)."""
    _, cache = model.run_with_cache(idx[:1], names=residual_hook_names(model.config.n_layer))
    return logit_lens_from_cache(model, idx, cache, k)


@torch.no_grad()
def logit_lens_from_cache(
    model, idx: torch.Tensor, cache: dict[str, torch.Tensor], k: int = 5
) -> LogitLens:
    """logit_lens over a run_with_cache cache of idx that holds residual_hook_names (and maybe
    more): a caller that caches for several tools runs the model once."""
    names = residual_hook_names(model.config.n_layer)
    next_tokens = idx[0, 1:]  # (T - 1,)
    top_ids, top_probs, next_probs = [], [], []
    for name in names:  # one stage at a time: (T, V) probabilities, never (stages, T, V)
        probs = decode_residual(model, cache[name][0]).float().softmax(dim=-1)  # (T, V)
        values, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)
        top_ids.append(ids.cpu())
        top_probs.append(values.cpu())
        next_probs.append(probs[:-1].gather(1, next_tokens[:, None])[:, 0].cpu())
    return LogitLens(
        stages=lens_stage_names(model.config.n_layer),
        top_ids=torch.stack(top_ids),
        top_probs=torch.stack(top_probs),
        next_token_probs=torch.stack(next_probs),
    )


def save_next_token_heatmap(path: str | Path, lens: LogitLens, tokens: list[str]) -> Path:
    """Probability of the actual next token, by stage (rows) and position (columns).

    Column t is labelled 'tokens[t]' → 'tokens[t+1]': the position reads tokens[t] and should
    predict tokens[t+1].
    """
    columns = [f"'{tokens[t]}' → '{tokens[t + 1]}'" for t in range(len(tokens) - 1)]
    return heatmap(
        path,
        lens.next_token_probs.numpy(),
        title="logit lens: probability of the actual next token",
        xlabel="position (reads → should predict)",
        ylabel="residual stream after",
        x_labels=columns,
        y_labels=lens.stages,
        colorbar_label="probability",
        value_range=(0.0, 1.0),
    )


def logit_lens_table(
    lens: LogitLens, tokenizer: Tokenizer, tokens: list[str], position: int
) -> str:
    """Top-k predictions at one position for every stage, and p(actual next token) if there is one."""
    has_next = position < len(tokens) - 1
    rows = []
    for s, stage in enumerate(lens.stages):
        top = ", ".join(
            f"{quoted(token_label(tokenizer, int(i)))} {format_number(float(p), 3)}"
            for i, p in zip(lens.top_ids[s, position], lens.top_probs[s, position], strict=True)
        )
        rows.append(
            [stage, top] + ([float(lens.next_token_probs[s, position])] if has_next else [])
        )
    k = lens.top_ids.shape[-1]
    headers = [
        "residual after",
        f"top {k} predictions at position {position} ({quoted(tokens[position])})",
    ]
    if has_next:
        headers.append(f"p({quoted(tokens[position + 1])})")
    return format_table(headers, rows)
