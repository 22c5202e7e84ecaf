"""Normalisation layers: GPT-2's LayerNorm, or RMSNorm (scale only, no mean subtraction)."""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.model.config import ModelConfig


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension (Zhang & Sennrich, 2019).

    Cheaper than LayerNorm (no mean, no bias) and, in practice, trains as well.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 so bf16 activations do not lose the small mean-square.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


def make_norm(config: ModelConfig, dim: int | None = None) -> nn.Module:
    """The configured normalisation over `dim` features (n_embd unless given)."""
    dim = config.n_embd if dim is None else dim
    if config.norm == "rmsnorm":
        return RMSNorm(dim, eps=config.layer_norm_eps)
    return nn.LayerNorm(dim, eps=config.layer_norm_eps, bias=config.bias)
