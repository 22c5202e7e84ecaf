"""The numbers behind each view of the page, as plain JSON-ready dicts.

Every computation is the library's: the sampling filters of gptlab.inference.generate, the
attention patterns, logit lens, direct logit attribution and ablation hooks of gptlab.interp.
Each function takes an Explorer (whose lock the caller holds) and the request's values, checks
them, and raises GptlabError with a one-line message for anything out of range.
"""

from __future__ import annotations

import base64

import torch

from gptlab.errors import require
from gptlab.explore.session import Explorer, PromptPass
from gptlab.inference.config import GenerationConfig
from gptlab.inference.sampling import draw_probabilities
from gptlab.interp.ablation import ablation_hooks, mlp_ablation_hooks
from gptlab.interp.attention import patterns_from_cache
from gptlab.interp.attribution import attribution_from_cache
from gptlab.interp.indices import check_head, check_layer, check_position
from gptlab.interp.logit_lens import logit_lens_from_cache
from gptlab.interp.tokens import single_token

THUMBNAIL = 48  # the attention grid's small patterns are at most this many cells a side
LENS_ALTERNATIVES = 3  # predictions per logit-lens cell (the top one is drawn, the rest on hover)
# Positions per logit-lens answer: a screen's width of table, and 10 positions x 13 stages of
# GPT-2 small decode in about 0.6 of a 64-token forward pass (benchmarks/logit_lens_view.py).
LENS_WINDOW = 10


def token_text(explorer: Explorer, token_id: int) -> str:
    """A token's own text (the page makes spaces and newlines visible)."""
    return explorer.tokenizer.decode([int(token_id)])


def token_list(explorer: Explorer, ids, probs=None) -> list[dict]:
    rows = [{"id": int(i), "text": token_text(explorer, i)} for i in ids]
    if probs is not None:
        for row, p in zip(rows, probs, strict=True):
            row["prob"] = float(p)
    return rows


def check_layer_head(explorer: Explorer, layer: int, head: int | None) -> tuple[int, int | None]:
    """The layer (negative counts from the end, as `gptlab inspect`) and head, checked."""
    layer = check_layer(explorer.model, layer)
    return layer, (None if head is None else check_head(explorer.model, head))


# -- next token ------------------------------------------------------------------------------


def next_token(
    explorer: Explorer,
    prompt: str,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    k: int = 10,
) -> dict:
    """The prompt's tokens and the top-k next tokens: the model's probability of each, and the
    probability `gptlab sample` with these settings would draw it with (0 where a filter cuts it)."""
    config = GenerationConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    cached = explorer.prompt_pass(prompt)
    logits = cached.logits[0, -1]  # (V,)
    probs = logits.softmax(-1)
    sampled = draw_probabilities(logits[None], config)[0]  # one-hot when greedy
    top_probs, top_ids = probs.topk(min(k, probs.numel()))
    candidates = token_list(explorer, top_ids.tolist(), top_probs.tolist())
    for row in candidates:
        row["sample_prob"] = float(sampled[row["id"]])
    kept = sampled > 0
    return {
        "tokens": token_list(explorer, cached.ids),
        "candidates": candidates,
        "kept_tokens": int(kept.sum()),
        "kept_mass": float(probs[kept].sum()),  # the model's probability the filters keep
        "vocab_size": int(probs.numel()),
    }


# -- attention -------------------------------------------------------------------------------


def attention(explorer: Explorer, prompt: str, layer: int = 0, head: int = 0) -> dict:
    """Every head's pattern as a small uint8 thumbnail (base64, row-major (L, H, S, S)) for the
    grid, and the chosen head's full pattern (T, T) for the large view."""
    explorer.require_model()
    layer, head = check_layer_head(explorer, layer, head)
    cached = explorer.prompt_pass(prompt)
    patterns = prompt_patterns(explorer, cached)  # (L, H, T, T)
    return {
        "tokens": token_list(explorer, cached.ids),
        "layer": layer,
        "head": head,
        "pattern": [[round(float(v), 5) for v in row] for row in patterns[layer, head]],
        **cached.memo("thumbnails", lambda: attention_thumbnails(patterns)),
    }


def prompt_patterns(explorer: Explorer, cached: PromptPass) -> torch.Tensor:
    return cached.memo(
        "patterns", lambda: patterns_from_cache(cached.cache, explorer.model.config.n_layer)
    )


def attention_thumbnails(patterns: torch.Tensor) -> dict:
    """Patterns shrunk to at most THUMBNAIL cells a side (max-pooled, so a sharp head stays
    sharp) and quantized to bytes: 144 heads of a 1024-token prompt stay a few hundred kB."""
    n_layer, n_head, T, _ = patterns.shape
    size = min(T, THUMBNAIL)
    pooled = torch.nn.functional.adaptive_max_pool2d(patterns.reshape(-1, T, T), size)
    return {
        "thumbnail_size": size,
        "thumbnails": quantized(pooled.reshape(n_layer, n_head, size, size)),
    }


def quantized(values: torch.Tensor) -> str:
    """Probabilities in [0, 1] as base64 bytes 0..255 (1/255 resolution is finer than colour)."""
    as_bytes = (values.clamp(0, 1) * 255).round().to(torch.uint8).contiguous().numpy().tobytes()
    return base64.b64encode(as_bytes).decode("ascii")


# -- logit lens ------------------------------------------------------------------------------


def lens_window_ends(length: int) -> list[int]:
    """Where each window of LENS_WINDOW positions ends (exclusive), the prompt's end first: the
    windows the page steps through, latest first."""
    return list(range(length, 0, -LENS_WINDOW))


def logit_lens_view(explorer: Explorer, prompt: str, end: int | None = None) -> dict:
    """For each stage (embeddings, after each block) and each position of a window of at most
    LENS_WINDOW positions ending before `end` (default: the prompt's end): the top predictions and
    the probability of the token that really comes next (None at the last position).

    Only the window is decoded: the unembedding is 50,257 wide, so decoding all 13 stages of
    GPT-2 small at every position of a 64-token prompt costs about four forward passes, while
    the page shows about a screen's width of positions at once and steps to the others."""
    explorer.require_model()
    cached = explorer.prompt_pass(prompt)
    length = len(cached.ids)
    end = length if end is None else end
    require(
        1 <= end <= length, f"end must be 1 to {length} (the prompt's {length} tokens), got {end}"
    )
    window = range(max(0, end - LENS_WINDOW), end)
    lens = cached.memo(
        f"lens:{end}",
        lambda: logit_lens_from_cache(
            explorer.model, cached.idx, cached.cache, k=LENS_ALTERNATIVES, positions=window
        ),
    )
    next_probs = lens.next_token_probs.tolist()
    if window.stop == length:  # the last position has no true next token
        next_probs = [row + [None] for row in next_probs]
    return {
        "tokens": token_list(explorer, cached.ids),
        "stages": lens.stages,
        "start": window.start,
        "end": window.stop,
        "window": LENS_WINDOW,
        "top": [
            [
                token_list(explorer, ids, probs)
                for ids, probs in zip(stage_ids, stage_probs, strict=True)
            ]
            for stage_ids, stage_probs in zip(
                lens.top_ids.tolist(), lens.top_probs.tolist(), strict=True
            )
        ],
        "next_token_probs": next_probs,
    }


# -- token loss ------------------------------------------------------------------------------


def token_loss(explorer: Explorer, prompt: str) -> dict:
    """How surprised the model is by each token of the prompt: at every position but the last,
    the probability it gave the token that really comes next, that token's rank among all
    tokens, and its loss (-ln p, what training minimises); at every position the entropy of the
    prediction (how unsure the model was before seeing the answer)."""
    explorer.require_model()
    cached = explorer.prompt_pass(prompt)
    log_probs = cached.logits[0].log_softmax(-1)  # (T, V)
    following = cached.idx[0, 1:]  # (T - 1,)
    chosen = log_probs[:-1].gather(1, following[:, None])[:, 0]  # (T - 1,)
    ranks = (log_probs[:-1] > chosen[:, None]).sum(-1)  # tokens the model preferred
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    losses = (-chosen).tolist()
    return {
        "tokens": token_list(explorer, cached.ids),
        "next_prob": chosen.exp().tolist(),
        "next_rank": (ranks + 1).tolist(),
        "loss": losses,
        "entropy": entropy.tolist(),
        "mean_loss": sum(losses) / len(losses) if losses else None,
    }


# -- attribution -----------------------------------------------------------------------------


def attribution(
    explorer: Explorer,
    prompt: str,
    target: str | None = None,
    contrast: str | None = None,
    position: int = -1,
) -> dict:
    """Each head's, MLP's and embedding's direct contribution to the target's logit at
    `position` (default: the top prediction at the last position); with a contrast token, to the
    logit difference target - contrast (the two splits subtracted term by term)."""
    explorer.require_model()
    cached = explorer.prompt_pass(prompt)
    position = check_position(len(cached.ids), position)
    target_id = None if not target else single_token(explorer.tokenizer, target, "target")
    main = attribution_from_cache(explorer.model, cached.logits, cached.cache, target_id, position)
    terms = attribution_terms(main)
    answer = {
        "tokens": token_list(explorer, cached.ids),
        "position": position,
        "target": token_list(explorer, [main.target_id])[0],
        "contrast": None,
        "logit": main.logit,
    }
    if contrast:
        other_id = single_token(explorer.tokenizer, contrast, "contrast")
        other = attribution_from_cache(
            explorer.model, cached.logits, cached.cache, other_id, position
        )
        other_terms = attribution_terms(other)
        terms = {key: subtract(terms[key], other_terms[key]) for key in terms}
        answer["contrast"] = token_list(explorer, [other_id])[0]
        answer["logit"] = main.logit - other.logit
    return answer | terms | {"sum_of_terms": total(terms)}


def attribution_terms(result) -> dict:
    return {
        "heads": result.heads.tolist(),
        "mlp": result.mlp.tolist(),
        "attn_bias": result.attn_bias.tolist(),
        "embed": result.embed,
        "pos_embed": result.pos_embed,
        "ln_final_bias": result.ln_final_bias,
    }


def subtract(a, b):
    if isinstance(a, list):
        return [subtract(x, y) for x, y in zip(a, b, strict=True)]
    return a - b


def total(terms: dict) -> float:
    flat = [v for row in terms["heads"] for v in row] + terms["mlp"] + terms["attn_bias"]
    return sum(flat) + terms["embed"] + terms["pos_embed"] + terms["ln_final_bias"]


# -- ablation --------------------------------------------------------------------------------


@torch.inference_mode()
def ablation(
    explorer: Explorer,
    prompt: str,
    component: str = "head",
    layer: int = 0,
    head: int | None = 0,
    mode: str = "zero",
    target: str | None = None,
    k: int = 10,
) -> dict:
    """The next-token distribution with one head (or one layer's MLP) zero- or mean-ablated,
    beside the intact model's (component "head" or "mlp", mode "zero" or "mean": the request
    declares the choices, gptlab.explore.registry). Mean ablation replaces the output by its mean over this
    prompt's positions: the component still writes its average, but nothing about this input."""
    explorer.require_model()
    if component == "head":
        require(head is not None, "a head ablation needs a head number")
    layer, head = check_layer_head(explorer, layer, head if component == "head" else None)
    cached = explorer.prompt_pass(prompt)
    hooks = ablation_hook_set(explorer, cached, component, layer, head, mode)
    with explorer.model.hooks(hooks):
        ablated_logits, _ = explorer.model(cached.idx, only_last=True)
    vocab = explorer.model.config.vocab_size
    intact = cached.logits[0, -1].softmax(-1)
    ablated = ablated_logits[0, -1, :vocab].float().softmax(-1)
    target_id = (
        int(intact.argmax()) if not target else single_token(explorer.tokenizer, target, "target")
    )

    def top(probs: torch.Tensor) -> list[dict]:
        values, ids = probs.topk(min(k, probs.numel()))
        rows = token_list(explorer, ids.tolist(), values.tolist())
        for row in rows:
            row["intact_prob"], row["ablated_prob"] = (
                float(intact[row["id"]]),
                float(ablated[row["id"]]),
            )
        return rows

    return {
        "component": component,
        "layer": layer,
        "head": head,
        "mode": mode,
        "target": token_list(explorer, [target_id])[0],
        "target_intact_prob": float(intact[target_id]),
        "target_ablated_prob": float(ablated[target_id]),
        "kl_divergence": float(
            (intact * (intact.clamp_min(1e-30).log() - ablated.clamp_min(1e-30).log())).sum()
        ),
        "intact": top(intact),
        "ablated": top(ablated),
    }


def ablation_hook_set(explorer: Explorer, cached: PromptPass, component, layer, head, mode) -> dict:
    n_layer = explorer.model.config.n_layer
    if component == "head":
        z_means = None
        if mode == "mean":  # (n_layer, n_head, head_dim): each head's mean output on this prompt
            z_means = torch.stack(
                [cached.hook(f"blocks.{i}.attn.hook_z")[0].mean(dim=0) for i in range(n_layer)]
            )
        return ablation_hooks({layer: [head]}, mode, z_means)
    mlp_means = None
    if mode == "mean":  # (n_layer, n_embd)
        mlp_means = torch.stack(
            [cached.hook(f"blocks.{i}.hook_mlp_out")[0].mean(dim=0) for i in range(n_layer)]
        )
    return mlp_ablation_hooks([layer], mode, mlp_means)
