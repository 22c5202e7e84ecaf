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
    top_ids: torch.Tensor  # (stages, W, k) most likely next tokens at each stage and position
    top_probs: torch.Tensor  # (stages, W, k)
    next_token_probs: torch.Tensor  # (stages, W') probability of the token that actually follows
    start: int = 0  # the W positions read are start, start + 1, ...; W' of them have a next token

    def to_dict(self) -> dict:
        return {
            "stages": self.stages,
            "start": self.start,
            "top_ids": self.top_ids.tolist(),
            "top_probs": self.top_probs.tolist(),
            "next_token_probs": self.next_token_probs.tolist(),
        }


@torch.no_grad()
def logit_lens(model, idx: torch.Tensor, k: int = 5) -> LogitLens:
    """Top-k predictions at every stage and position for the sequence idx (1, T)."""
    _, cache = model.run_with_cache(idx[:1], names=residual_hook_names(model.config.n_layer))
    return logit_lens_from_cache(model, idx, cache, k)


DECODE_ROWS = 256  # residual vectors unembedded at once: a (256, 50257) fp32 block is 51 MB


@torch.no_grad()
def logit_lens_from_cache(
    model,
    idx: torch.Tensor,
    cache: dict[str, torch.Tensor],
    k: int = 5,
    positions: range | None = None,
) -> LogitLens:
    """logit_lens over a run_with_cache cache of idx that holds residual_hook_names (and maybe
    more): a caller that caches for several tools runs the model once. `positions` (a range,
    default all) decodes only those positions: the unembedding of every stage costs about four
    forward passes of GPT-2 small over the whole prompt, so a view that shows a window decodes
    only the window.

    Every (stage, position) row is decoded in blocks of DECODE_ROWS through ln_f and the head;
    only each row's top-k, its log-normaliser and the true next token's logit are kept, never
    a full softmax per row."""
    T = idx.shape[1]
    positions = range(T) if positions is None else positions
    names = residual_hook_names(model.config.n_layer)
    window = slice(positions.start, positions.stop)
    resid = torch.stack([cache[name][0, window] for name in names])  # (S, W, C)
    S, W, C = resid.shape
    has_next = [p + 1 < T for p in positions]
    targets = idx[0, [min(p + 1, T - 1) for p in positions]].repeat(S)  # (S * W,)
    top_ids, top_probs, next_probs = [], [], []
    for rows in torch.split(torch.arange(S * W, device=resid.device), DECODE_ROWS):
        logits = decode_residual(model, resid.reshape(S * W, C)[rows]).float()  # (rows, V)
        log_norm = logits.logsumexp(dim=-1, keepdim=True)
        values, ids = logits.topk(min(k, logits.shape[-1]), dim=-1)
        top_ids.append(ids.cpu())
        top_probs.append((values - log_norm).exp().cpu())
        next_probs.append((logits.gather(1, targets[rows, None]) - log_norm)[:, 0].exp().cpu())
    kept = torch.tensor(has_next)
    return LogitLens(
        stages=lens_stage_names(model.config.n_layer),
        top_ids=torch.cat(top_ids).reshape(S, W, -1),
        top_probs=torch.cat(top_probs).reshape(S, W, -1),
        next_token_probs=torch.cat(next_probs).reshape(S, W)[:, kept],
        start=positions.start,
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
