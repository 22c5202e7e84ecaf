"""Direct logit attribution: how much each head, MLP and embedding writes toward one token's logit.

The final residual stream is a sum of what every component wrote into it:

    resid_final = embed + pos_embed + sum_i (sum_h head_{i,h} + attn_bias_i + mlp_i)

where head_{i,h} = z_{i,h} @ W_O[:, h-th slice]^T and attn_bias_i is c_proj's bias (it belongs to no
head). Both are read by calling c_proj itself (on each head's output alone, and on zeros), so a
wrapped projection (e.g. an unmerged LoRA layer) is handled like a plain one. The logit of token t is lm_head[t] . ln_f(resid_final), and

    ln_f(x) = (x - mean(x)) / scale * gamma + beta,     scale = sqrt(var(x) + eps).

With `scale` frozen at its value in the real forward pass, ln_f is linear in x (centering is
linear too), so the logit splits exactly into one term per component plus the constant
lm_head[t] . beta:

    logit_t = sum_c (c - mean(c)) . (lm_head[t] * gamma / scale)  +  lm_head[t] . beta

The terms sum to the model's logit (up to float rounding); they are computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gptlab.errors import GptlabError
from gptlab.plotting import bar_chart, head_grid_heatmap
from gptlab.tables import format_table, quoted


@dataclass
class LogitAttribution:
    target_id: int
    position: int
    logit: float  # the model's own logit for target_id at position
    heads: torch.Tensor  # (n_layer, n_head) each head's direct contribution
    attn_bias: torch.Tensor  # (n_layer,) c_proj bias of each attention layer
    mlp: torch.Tensor  # (n_layer,) each MLP's output (its biases included)
    embed: float  # token embedding
    pos_embed: float  # position embedding
    ln_final_bias: float  # lm_head[t] . ln_f.bias: written by no component

    def components(self) -> list[tuple[str, float]]:
        """Every term by name, in model order; they sum to `logit`."""
        terms = [("embed", self.embed), ("pos_embed", self.pos_embed)]
        for layer in range(self.heads.shape[0]):
            terms += [(f"L{layer}H{h}", float(v)) for h, v in enumerate(self.heads[layer])]
            terms += [
                (f"L{layer} attn bias", float(self.attn_bias[layer])),
                (f"L{layer} mlp", float(self.mlp[layer])),
            ]
        terms.append(("ln_final bias", self.ln_final_bias))
        return terms

    def total(self) -> float:
        return sum(value for _, value in self.components())

    def to_dict(self) -> dict:
        return {
            "target_id": self.target_id,
            "position": self.position,
            "logit": self.logit,
            "sum_of_components": self.total(),
            "components": dict(self.components()),
        }


@torch.no_grad()
def direct_logit_attribution(
    model, idx: torch.Tensor, target_id: int | None = None, position: int = -1
) -> LogitAttribution:
    """Split the logit of target_id (default: the top prediction) at `position` of idx (1, T)."""
    config = model.config
    check_attribution_supported(config)
    logits, cache = model.run_with_cache(idx[:1], names=attribution_hook_names(config.n_layer))
    return attribution_from_cache(model, logits, cache, target_id, position)


def attribution_hook_names(n_layer: int) -> list[str]:
    """What direct_logit_attribution reads from the forward pass."""
    names = ["hook_embed", "hook_pos_embed", "blocks.*.attn.hook_z", "blocks.*.hook_mlp_out"]
    return names + [f"blocks.{n_layer - 1}.hook_resid_post"]


def check_attribution_supported(config) -> None:
    """The split is exact only when the logit is linear in the residual stream once ln_f's scale
    is frozen: a pre-norm model with LayerNorm and no soft-capping."""
    if config.norm != "layernorm" or config.norm_placement != "pre" or config.logit_softcap:
        raise GptlabError(
            "direct logit attribution needs a pre-LayerNorm model without logit soft-capping "
            f"(this one has norm={config.norm}, norm_placement={config.norm_placement}, "
            f"logit_softcap={config.logit_softcap})"
        )
    if config.stream_extras():
        raise GptlabError(
            "direct logit attribution splits the residual stream into the embeddings and the "
            "blocks' writes, which this model's "
            f"{', '.join(config.stream_extras())} adds to or rescales"
        )


@torch.no_grad()
def attribution_from_cache(
    model,
    logits: torch.Tensor,
    cache: dict[str, torch.Tensor],
    target_id: int | None = None,
    position: int = -1,
) -> LogitAttribution:
    """direct_logit_attribution from a run_with_cache pass (logits and a cache holding
    attribution_hook_names, maybe more), so a caller caching for several tools runs the model once."""
    check_attribution_supported(model.config)
    n_layer, n_head, head_dim = model.config.n_layer, model.config.n_head, model.config.head_dim
    position = position % logits.shape[1]
    if target_id is None:
        target_id = int(logits[0, position].argmax())

    def at_position(name: str) -> torch.Tensor:  # (..., C) at the chosen position, float64
        return cache[name][0, position].double()

    ln_f = model.ln_f
    resid_final = at_position(f"blocks.{n_layer - 1}.hook_resid_post")  # (C,)
    scale = torch.sqrt(resid_final.var(unbiased=False) + ln_f.eps)  # frozen from the real forward
    unembed = model.lm_head.weight[target_id].double()  # (C,)
    gamma = ln_f.weight.double() if ln_f.weight is not None else torch.ones_like(unembed)
    direction = unembed * gamma / scale  # (C,)

    def project(vectors: torch.Tensor) -> torch.Tensor:  # (..., C) -> (...): centred, then dotted
        return (vectors - vectors.mean(dim=-1, keepdim=True)) @ direction

    heads = torch.zeros(n_layer, n_head, dtype=torch.float64)
    attn_bias = torch.zeros(n_layer, dtype=torch.float64)
    mlp = torch.zeros(n_layer, dtype=torch.float64)
    for layer, block in enumerate(model.blocks):
        z = cache[f"blocks.{layer}.attn.hook_z"][0, position]  # (H, D)
        writes, bias = per_head_writes(block.attn.c_proj, z, n_head, head_dim)
        heads[layer] = project(writes).cpu()
        attn_bias[layer] = project(bias).cpu()
        mlp[layer] = project(at_position(f"blocks.{layer}.hook_mlp_out")).cpu()
    ln_final_bias = float(unembed @ ln_f.bias.double()) if ln_f.bias is not None else 0.0
    return LogitAttribution(
        target_id=target_id,
        position=position,
        logit=float(logits[0, position, target_id]),
        heads=heads,
        attn_bias=attn_bias,
        mlp=mlp,
        embed=float(project(at_position("hook_embed"))),
        # Rotary or no position encoding adds nothing to the residual stream.
        pos_embed=float(project(cache["hook_pos_embed"][0, position].double()))
        if "hook_pos_embed" in cache
        else 0.0,
        ln_final_bias=ln_final_bias,
    )


def per_head_writes(
    c_proj: torch.nn.Module, z: torch.Tensor, n_head: int, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """What each head writes to the residual stream, and the projection's bias, in float64.

    z: (H, D) the heads' outputs at one position. Row h of the input holds head h's output in
    its slot and zeros elsewhere, so c_proj(row h) - c_proj(0) is head h's write: (H, C).
    """
    one_head_each = torch.zeros(n_head, n_head, head_dim, dtype=z.dtype, device=z.device)
    one_head_each[torch.arange(n_head), torch.arange(n_head)] = z
    bias = c_proj(torch.zeros(1, n_head * head_dim, dtype=z.dtype, device=z.device))[0]  # (C,)
    writes = c_proj(one_head_each.view(n_head, n_head * head_dim)) - bias  # (H, C)
    return writes.double(), bias.double()


def save_attribution_plots(
    directory: str | Path, result: LogitAttribution, target: str
) -> list[Path]:
    """attribute_heads.png (layer x head heatmap) and attribute_components.png (bars: embeddings, MLPs, head sums)."""
    directory = Path(directory)
    n_layer = result.heads.shape[0]
    head_map = head_grid_heatmap(
        directory / "attribute_heads.png",
        result.heads,
        f"direct logit attribution of {target!r} per head",
        "logit contribution",
    )
    labels = ["embed", "pos_embed"]
    values = [result.embed, result.pos_embed]
    for layer in range(n_layer):
        labels += [f"L{layer} heads", f"L{layer} attn bias", f"L{layer} mlp"]
        values += [
            float(result.heads[layer].sum()),
            float(result.attn_bias[layer]),
            float(result.mlp[layer]),
        ]
    labels.append("ln_final bias")
    values.append(result.ln_final_bias)
    bars = bar_chart(
        directory / "attribute_components.png",
        labels,
        np.array(values),
        title=f"direct logit attribution of {target!r} (sum {result.total():.3f} = logit {result.logit:.3f})",
        xlabel="logit contribution",
    )
    return [head_map, bars]


def attribution_table(result: LogitAttribution, target: str, top_k: int) -> str:
    """A headline (logit vs. the sum of the terms) and the top_k largest terms by size."""
    headline = (
        f"target {quoted(target)} (id {result.target_id}) at position {result.position}: "
        f"logit {result.logit:.4f}, sum of components {result.total():.4f}"
    )
    largest = sorted(result.components(), key=lambda item: abs(item[1]), reverse=True)[:top_k]
    return (
        headline
        + "\n"
        + format_table(["component", "logit contribution"], [list(c) for c in largest])
    )
