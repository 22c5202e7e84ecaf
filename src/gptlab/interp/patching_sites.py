"""Activation patching over a prompt set at every site TransformerLens' patching module offers,
path patching from one head to another head's query, key or value, and attribution patching.

Each patch reruns the corrupted prompts with one activation replaced by its value in the clean
run, and scores the mean logit difference over the set, normalised as in interp/patching.py
(clean -> 1, corrupted -> 0). Sites and the grids they give:

    resid_pre, resid_mid, attn_out, mlp_out   (layer, position)   blocks.L.hook_<site>[:, t]
    z                                          (layer, head)       every position of a head's output
    z_position                                 (layer, head, pos)  one position of a head's output
    q, k, v, pattern                           (layer, head)       a head's query/key/value/pattern

Path patching (Wang et al. 2022) asks how much of a sender head's effect goes directly into one
receiver head's q, k or v: in the corrupted run, the receiver's input is recomputed from its
residual stream plus (sender's clean write - sender's corrupted write), and nothing else changes,
so paths through other components stay corrupted. Attribution patching (Nanda 2023) approximates
every head's patching score at once with one backward pass: the gradient of the metric at the
corrupted z times (clean z - corrupted z), summed over positions and head dimensions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.errors import GptlabError
from gptlab.interp.patching import require_restorable
from gptlab.interp.prompt_sets import PromptSet
from gptlab.plotting import heatmap
from gptlab.tables import format_table

RESIDUAL_SITES = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
}
HEAD_SITES = {
    "z": "attn.hook_z",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "pattern": "attn.hook_pattern",
}
SITES = (*RESIDUAL_SITES, "z", "z_position", "q", "k", "v", "pattern")


def check_site(site: str) -> str:
    if site not in SITES:
        raise GptlabError(f"unknown patching site {site!r}: use one of {', '.join(SITES)}")
    return site


def hook_name(site: str, layer: int) -> str:
    if site in RESIDUAL_SITES:
        return f"blocks.{layer}.{RESIDUAL_SITES[site]}"
    return f"blocks.{layer}.{HEAD_SITES['z' if site == 'z_position' else site]}"


def site_index(site: str, head: int | None, position: int | None) -> tuple:
    """The index of one patch into an activation of the site's shape, batch dimension first:
    (B, T, C) residual; (B, T, H, D) z; (B, H, T, D) q/k/v; (B, H, T, T) pattern."""
    everything = slice(None)
    if site in RESIDUAL_SITES:
        return (everything, position)
    if site == "z":
        return (everything, everything, head)
    if site == "z_position":
        return (everything, position, head)
    return (everything, head)  # q, k, v, pattern: the head's whole slice


def patch_grid(model, site: str, T: int) -> list[tuple]:
    """Every (layer, head or None, position or None) patch of a site, in grid order."""
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if site in RESIDUAL_SITES:
        return [(layer, None, t) for layer in range(n_layer) for t in range(T)]
    if site == "z_position":
        return [(layer, h, t) for layer in range(n_layer) for h in range(n_head) for t in range(T)]
    if site in ("k", "v") and model.config.kv_heads != n_head:
        raise GptlabError(
            "patching k or v per head needs one key/value head per query head (this model "
            "uses grouped-query attention)"
        )
    return [(layer, h, None) for layer in range(n_layer) for h in range(n_head)]


def grid_shape(model, site: str, T: int) -> tuple[int, ...]:
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if site in RESIDUAL_SITES:
        return (n_layer, T)
    if site == "z_position":
        return (n_layer, n_head, T)
    return (n_layer, n_head)


@dataclass
class SitePatching:
    site: str
    clean_metric: float  # mean logit difference, clean prompts
    corrupted_metric: float
    metric: torch.Tensor  # grid_shape: mean logit difference with that patch

    @property
    def score(self) -> torch.Tensor:
        span = self.clean_metric - self.corrupted_metric
        if span == 0:
            return torch.full_like(self.metric, float("nan"))
        return (self.metric - self.corrupted_metric) / span

    def to_dict(self) -> dict:
        return {
            "site": self.site,
            "clean_metric": self.clean_metric,
            "corrupted_metric": self.corrupted_metric,
            "metric": self.metric.tolist(),
            "score": self.score.tolist(),
        }


@torch.no_grad()
def patch_site(
    model, prompts: PromptSet, site: str, progress: bool = True, patches_per_pass: int = 8
) -> SitePatching:
    """Patch each activation of `site` from the clean into the corrupted prompts, one at a time."""
    check_site(site)
    N, T = prompts.clean.shape
    names = sorted({hook_name(site, layer) for layer in range(model.config.n_layer)})
    clean_logits, clean_cache = model.run_with_cache(prompts.clean, names=names)
    corrupted_logits, _ = model(prompts.corrupted, only_last=True)
    require_restorable(
        float(prompts.logit_diff(clean_logits).mean()),
        float(prompts.logit_diff(corrupted_logits).mean()),
        model,
    )
    patches = patch_grid(model, site, T)
    values = []
    bar = tqdm(total=len(patches), desc=f"patching {site}", unit="patch", disable=not progress)
    for start in range(0, len(patches), patches_per_pass):
        chunk = patches[start : start + patches_per_pass]
        by_layer: dict[int, list[tuple[int, tuple]]] = {}
        for p, (layer, head, position) in enumerate(chunk):
            by_layer.setdefault(layer, []).append((p, site_index(site, head, position)))

        def make_hook(layer: int, indices: list[tuple[int, tuple]]):
            clean = clean_cache[hook_name(site, layer)]

            def patch(x: torch.Tensor, name: str) -> torch.Tensor:  # x: (P * N, ...)
                x = x.clone()
                for p, index in indices:
                    rows = x[p * N : (p + 1) * N]  # a view: assigning into it changes x
                    rows[index] = clean[index]
                return x

            return patch

        hooks = {
            hook_name(site, layer): make_hook(layer, found) for layer, found in by_layer.items()
        }
        with model.hooks(hooks):
            logits, _ = model(prompts.corrupted.repeat(len(chunk), 1), only_last=True)
        values.append(prompts_metric(prompts, logits, len(chunk)))
        bar.update(len(chunk))
    bar.close()
    return SitePatching(
        site=site,
        clean_metric=float(prompts.logit_diff(clean_logits).mean()),
        corrupted_metric=float(prompts.logit_diff(corrupted_logits).mean()),
        metric=torch.cat(values).reshape(grid_shape(model, site, T)),
    )


def prompts_metric(prompts: PromptSet, logits: torch.Tensor, copies: int) -> torch.Tensor:
    """Mean logit difference of each of `copies` stacked copies of the set: (copies,)."""
    N = len(prompts)
    answers, wrongs = prompts.answers.repeat(copies), prompts.wrongs.repeat(copies)
    last = logits[:, -1].float()
    rows = torch.arange(last.shape[0], device=last.device)
    return (last[rows, answers] - last[rows, wrongs]).reshape(copies, N).mean(dim=1).cpu()


# ---- path patching ------------------------------------------------------------------------------

RECEIVER_INPUTS = ("q", "k", "v")


def head_write(model, layer: int, head: int, z: torch.Tensor) -> torch.Tensor:
    """What head `head` writes into the residual stream: z (B, T, H, D) -> (B, T, C), no bias."""
    D = model.config.head_dim
    w_o = model.blocks[layer].attn.c_proj.weight[:, head * D : (head + 1) * D]  # (C, D)
    return z[:, :, head] @ w_o.T


def check_path_patching(model, receiver: tuple[int, int], receiver_input: str) -> None:
    config = model.config
    if receiver_input not in RECEIVER_INPUTS:
        raise GptlabError(f"unknown receiver input {receiver_input!r}: use q, k or v")
    if config.norm_placement != "pre" or config.pos == "rope" or config.qk_norm:
        raise GptlabError(
            "path patching recomputes a head's q/k/v from its residual stream, which needs a "
            "pre-norm model without rotary positions or QK-norm"
        )
    if config.stream_extras():
        raise GptlabError(
            "path patching adds a sender's write to the receiver's residual stream as it is, "
            f"which this model's {', '.join(config.stream_extras())} "
            "rescales or adds to; it is defined only for models without them"
        )
    if receiver_input != "q" and config.kv_heads != config.n_head:
        raise GptlabError("path patching into k or v needs one key/value head per query head")
    if receiver[0] == 0:
        raise GptlabError(
            "the receiver head must be in layer 1 or later: nothing sends into layer 0"
        )


@torch.no_grad()
def path_patching(
    model,
    prompts: PromptSet,
    receiver: tuple[int, int],
    receiver_input: str = "q",
    progress: bool = True,
) -> SitePatching:
    """For every sender head in a layer before the receiver's, the metric when only the path
    sender -> receiver's `receiver_input` carries the sender's clean output: (receiver layer, n_head),
    senders in later layers are NaN. The result's site is "path -> L{l}H{h}.{input}"."""
    check_path_patching(model, receiver, receiver_input)
    r_layer, r_head = receiver
    n_head, C, D = model.config.n_head, model.config.n_embd, model.config.head_dim
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(r_layer)]
    clean_logits, clean_cache = model.run_with_cache(prompts.clean, names=z_names)
    corrupted_logits, corrupted_cache = model.run_with_cache(prompts.corrupted, names=z_names)
    require_restorable(
        float(prompts.logit_diff(clean_logits).mean()),
        float(prompts.logit_diff(corrupted_logits).mean()),
        model,
    )
    block = model.blocks[r_layer]
    offset = {"q": 0, "k": C, "v": 2 * C}[receiver_input] + r_head * D
    metric = torch.full((r_layer, n_head), float("nan"))
    bar = tqdm(total=r_layer * n_head, desc="path patching", unit="sender", disable=not progress)
    for s_layer in range(r_layer):
        for s_head in range(n_head):
            name = f"blocks.{s_layer}.attn.hook_z"
            delta = head_write(model, s_layer, s_head, clean_cache[name]) - head_write(
                model, s_layer, s_head, corrupted_cache[name]
            )
            resid = {}

            def keep_resid(x: torch.Tensor, name: str, resid=resid) -> None:
                resid["x"] = x

            def replace_input(x: torch.Tensor, name: str, delta=delta, resid=resid) -> torch.Tensor:
                # x: (B, H, T, D). The receiver's input, recomputed from resid + delta.
                projected = block.attn.c_attn(block.ln_1(resid["x"] + delta))  # (B, T, 3C)
                x = x.clone()
                x[:, r_head] = projected[..., offset : offset + D]
                return x

            hooks = {
                f"blocks.{r_layer}.hook_resid_pre": keep_resid,
                f"blocks.{r_layer}.attn.hook_{receiver_input}": replace_input,
            }
            with model.hooks(hooks):
                logits, _ = model(prompts.corrupted, only_last=True)
            metric[s_layer, s_head] = prompts.logit_diff(logits).mean().cpu()
            bar.update()
    bar.close()
    return SitePatching(
        site=f"path -> L{r_layer}H{r_head}.{receiver_input}",
        clean_metric=float(prompts.logit_diff(clean_logits).mean()),
        corrupted_metric=float(prompts.logit_diff(corrupted_logits).mean()),
        metric=metric,
    )


# ---- attribution patching -----------------------------------------------------------------------


@dataclass
class AttributionPatching:
    estimate: SitePatching  # the gradient estimate of every head's z patch
    actual: SitePatching  # real z patching, for comparison
    rank_correlation: float  # Spearman's rho between the two, over all heads; NaN when undefined

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate.to_dict(),
            "actual": self.actual.to_dict(),
            # NaN is not JSON: an undefined correlation is null
            "spearman": None if math.isnan(self.rank_correlation) else self.rank_correlation,
        }


def attribution_patching(model, prompts: PromptSet) -> SitePatching:
    """The first-order estimate of patching each head's z (all positions): metric(corrupted) +
    sum over positions and dims of grad_z metric (at corrupted) * (z_clean - z_corrupted)."""
    names = ["blocks.*.attn.hook_z"]
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(prompts.clean, names=names)

    def mean_diff(logits: torch.Tensor) -> torch.Tensor:
        return prompts.logit_diff(logits).mean()

    corrupted_metric, corrupted_cache, grads = model.run_with_grads(
        prompts.corrupted, mean_diff, names
    )
    require_restorable(float(mean_diff(clean_logits)), float(corrupted_metric), model)
    n_layer = model.config.n_layer
    estimate = torch.stack(
        [
            (grads[n] * (clean_cache[n] - corrupted_cache[n])).sum(dim=(0, 1, 3)).float().cpu()
            for n in (f"blocks.{layer}.attn.hook_z" for layer in range(n_layer))
        ]
    )
    corrupted = float(corrupted_metric)
    return SitePatching(
        site="z (attribution patching)",
        clean_metric=float(mean_diff(clean_logits)),
        corrupted_metric=corrupted,
        metric=corrupted + estimate,
    )


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two same-shaped tensors (ties get their mean rank)."""

    def ranks(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten().double()
        order = x.argsort()
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=torch.float64)
        for value in x.unique():  # average the ranks of ties
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denominator) if denominator > 0 else float("nan")


def compare_attribution_patching(
    model, prompts: PromptSet, progress: bool = True
) -> AttributionPatching:
    """Attribution patching of every head, next to real patching, with their rank correlation."""
    estimate = attribution_patching(model, prompts)
    actual = patch_site(model, prompts, "z", progress=progress)
    return AttributionPatching(estimate, actual, spearman(estimate.metric, actual.metric))


# ---- pictures -----------------------------------------------------------------------------------


def save_site_heatmap(
    path: str | Path, result: SitePatching, tokens: list[str] | None = None
) -> Path:
    """The normalised score as a heatmap: layer x position, or layer x head (z_position: one row
    per (layer, head), positions across)."""
    score = result.score
    n_layer = score.shape[0]
    layers = [str(layer) for layer in range(n_layer)]
    subtitle = (
        f"logit diff: clean {result.clean_metric:.3f}, corrupted {result.corrupted_metric:.3f}"
    )
    if score.dim() == 3:
        n_head = score.shape[1]
        score = score.reshape(n_layer * n_head, -1)
        rows = [f"L{layer}H{h}" for layer in range(n_layer) for h in range(n_head)]
        xlabel, x_labels, ylabel = "position", tokens, "head"
    elif result.site in RESIDUAL_SITES:
        rows, xlabel, x_labels, ylabel = layers, "position", tokens, "layer"
    else:
        rows, xlabel, ylabel = layers, "head", "layer"
        x_labels = [str(h) for h in range(score.shape[1])]
    return heatmap(
        path,
        score.numpy(),
        title=f"patching {result.site}\n{subtitle}",
        xlabel=xlabel,
        ylabel=ylabel,
        x_labels=x_labels,
        y_labels=rows,
        colorbar_label="restored (clean = 1, corrupted = 0)",
        diverging=True,
    )


def site_table(result: SitePatching, top_k: int, tokens: list[str] | None = None) -> str:
    """The top_k patches by restored score: "L1 pos 4", "L0H3" or "L0H3 pos 4"."""
    score = result.score.nan_to_num(nan=float("-inf"))
    rows = []
    for index in score.flatten().argsort(descending=True)[:top_k]:
        if not torch.isfinite(score.flatten()[index]):
            break
        where = [int(i) for i in torch.unravel_index(index, score.shape)]
        if score.dim() == 3:
            label = f"L{where[0]}H{where[1]} pos {where[2]}"
        elif result.site in RESIDUAL_SITES:
            label = f"L{where[0]} pos {where[1]}"
        else:
            label = f"L{where[0]}H{where[1]}"
        rows.append(
            [label, float(result.metric.flatten()[index]), float(result.score.flatten()[index])]
        )
    return format_table(["patched", "logit diff", "restored"], rows)
