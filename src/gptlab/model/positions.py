"""Rotary position embedding (RoPE, Su et al. 2021).

Instead of adding a position vector to the input, RoPE rotates each (first half, second half)
pair of a query's and a key's features by an angle proportional to its position. The score
q·k then depends only on the difference of the two positions: attention becomes relative.
"""

from __future__ import annotations

import torch


def rope_angles(
    position_ids: torch.Tensor, head_dim: int, base: float = 10000.0, truncated: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position's rotation angles, each (B or 1, 1, T, head_dim // 2).

    position_ids: (B or 1, T) absolute positions. Pair i turns at frequency base^(-2i / head_dim):
    the first pairs spin fast (fine position), the last slowly (coarse position). truncated
    (modded-nanogpt's half-truncated RoPE): the first half of the pairs spread the same range
    of frequencies, base^(-i / (half // 2)), and the rest do not turn at all, so those features
    match content at any distance (what an induction head looks for).
    """
    half = head_dim // 2
    turning = half // 2 if truncated else half
    i = torch.arange(half, device=position_ids.device, dtype=torch.float32)
    inv_freq = torch.where(i < turning, base ** (-i / turning), 0.0)
    angles = position_ids.float().unsqueeze(-1) * inv_freq  # (B, T, half)
    angles = angles.unsqueeze(1)  # (B, 1, T, half): the same rotation for every head
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, heads, T, head_dim): feature i pairs with feature i + head_dim // 2."""
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, heads, T, half) each
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return rotated.to(x.dtype)
