"""Interventions through an SAE's features, with the model's own hooks.

steer     add scale x (a feature's decoder row) to the activation at the SAE's hook, at every
          position: the model computes on as if that feature fired that much more
ablate    remove a feature's contribution f_i(x) x W_dec[i] from the activation, leaving the
          rest (and the SAE's reconstruction error) as it was; then compare the next-token
          distribution and the prompt's loss with the intact model's
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from gptlab.device import resolve_device
from gptlab.errors import GptlabError
from gptlab.model.hooks import HookFn
from gptlab.sae.folder import load_sae_and_model
from gptlab.sae.model import SparseAutoencoder

MAX_STEER = 1e6  # a unit direction a million times over: far past any useful steering


def parse_steer(spec: str) -> tuple[int, float]:
    """'417:8' -> (417, 8.0)."""
    feature, sep, scale = spec.partition(":")
    try:
        if not sep:
            raise ValueError
        feature_id, value = int(feature), float(scale)
    except ValueError:
        raise GptlabError(f"steer {spec!r} is not ID:SCALE (e.g. 417:8)") from None
    # Past MAX_STEER the squares in the next LayerNorm overflow float32 and every logit is NaN,
    # which the decoder would blame on damaged weights.
    if not math.isfinite(value) or abs(value) > MAX_STEER:
        raise GptlabError(
            f"steer {spec!r}: SCALE must be a finite number of size at most {MAX_STEER:g} "
            "(e.g. 417:8)"
        )
    return feature_id, value


def check_feature(sae: SparseAutoencoder, feature: int) -> int:
    if not 0 <= feature < sae.d_sae:
        raise GptlabError(f"feature {feature} does not exist: this SAE has 0..{sae.d_sae - 1}")
    return feature


def steering_hooks(
    sae: SparseAutoencoder, hook: str, steers: list[tuple[int, float]]
) -> dict[str, HookFn]:
    """{hook: fn} adding sum(scale x W_dec[feature]) to the activation; use with model.hooks()."""
    direction = sum(
        scale * sae.W_dec[check_feature(sae, feature)].detach() for feature, scale in steers
    )

    def add(x: torch.Tensor, name: str) -> torch.Tensor:
        return x + direction.to(x.dtype)

    return {hook: add}


def steer_model(model, folder: str | Path, specs: list[str]):
    """A context manager under which `model` runs with the features of the SAE in `folder`
    added at its hook (specs like '417:8'); the SAE must have been trained on this model's shape."""
    from gptlab.sae.activations import check_hook
    from gptlab.sae.folder import check_sae_model, load_sae

    steers = [parse_steer(spec) for spec in specs]
    sae, config = load_sae(folder, next(model.parameters()).device)
    hook = check_hook(model, config["hook"])
    check_sae_model(config, model, folder)
    for feature, _ in steers:
        check_feature(sae, feature)
    width = model.config.n_embd
    if sae.d_in != width:
        raise GptlabError(
            f"the SAE in {folder} reads {sae.d_in}-wide activations; this model's are {width}"
        )
    return model.hooks(steering_hooks(sae, hook, steers) if steers else {})


def ablation_hooks(sae: SparseAutoencoder, hook: str, feature: int) -> dict[str, HookFn]:
    """{hook: fn} removing the feature's contribution from the activation."""
    row = sae.W_dec[check_feature(sae, feature)].detach()

    def remove(x: torch.Tensor, name: str) -> torch.Tensor:
        acts = sae.encode(x)[..., feature : feature + 1]
        return x - acts * row.to(x.dtype)

    return {hook: remove}


@torch.no_grad()
def ablation_effect(
    model, tokenizer, sae: SparseAutoencoder, hook: str, feature: int, prompt: str, top: int = 10
) -> dict:
    """The feature's activation on each prompt token, and the intact vs ablated model: loss on
    the prompt's next tokens and the next-token distribution after it."""
    check_feature(sae, feature)  # before the forward pass indexes the activations with it
    ids = tokenizer.encode(prompt)
    if not ids:
        raise GptlabError("the prompt is empty; give some text")
    ids = ids[-model.config.block_size :]
    device = next(model.parameters()).device
    idx = torch.tensor([ids], device=device)
    targets = idx[:, 1:] if len(ids) > 1 else None
    _, cache = model.run_with_cache(idx, [hook])
    acts = sae.encode(cache[hook])[0, :, feature]
    clean_logits, _ = model(idx)
    with model.hooks(ablation_hooks(sae, hook, feature)):
        ablated_logits, _ = model(idx)

    def loss(logits: torch.Tensor) -> float | None:
        if targets is None:
            return None
        return F.cross_entropy(logits[0, :-1], targets[0]).item()

    clean_p = clean_logits[0, -1].float().softmax(-1)
    ablated_p = ablated_logits[0, -1].float().softmax(-1)
    change = ablated_p - clean_p
    order = change.abs().topk(min(top, change.numel())).indices.tolist()
    return {
        "feature": feature,
        "tokens": [tokenizer.decode([t]) for t in ids],
        "acts": acts.tolist(),
        "loss_clean": loss(clean_logits),
        "loss_ablated": loss(ablated_logits),
        "kl": (clean_p * (clean_p.clamp_min(1e-12).log() - ablated_p.clamp_min(1e-12).log()))
        .sum()
        .item(),
        "next": [
            {
                "token": tokenizer.decode([i]),
                "clean": clean_p[i].item(),
                "ablated": ablated_p[i].item(),
            }
            for i in order
        ],
    }


def ablate_feature(
    folder: str | Path, feature: int, prompt: str, device: str = "auto", top: int = 10
) -> dict:
    sae, config, model, tokenizer = load_sae_and_model(folder, resolve_device(device))
    return ablation_effect(model, tokenizer, sae, config["hook"], feature, prompt, top)


def ablation_report(result: dict, top: int) -> str:
    shown = " ".join(
        f"{token!r}:{act:.1f}" if act > 0 else repr(token)
        for token, act in zip(result["tokens"], result["acts"], strict=True)
    )
    lines = [
        f"feature {result['feature']} on each prompt token (active ones with their value):",
        f"  {shown}",
    ]
    if result["loss_clean"] is not None:
        lines.append(
            f"loss on the prompt's next tokens: intact {result['loss_clean']:.4f}, "
            f"feature zeroed {result['loss_ablated']:.4f} ({result['loss_ablated'] - result['loss_clean']:+.4f})"
        )
    lines.append(
        f"next token after the prompt (KL intact -> zeroed {result['kl']:.5f}), largest changes:"
    )
    for row in result["next"][:top]:
        lines.append(
            f"  {row['token']!r:>12}  {100 * row['clean']:6.2f}% -> {100 * row['ablated']:6.2f}%"
        )
    return "\n".join(lines)
