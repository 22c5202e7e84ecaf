"""The feed-forward sublayer: GPT-2's GELU MLP, or a SwiGLU / squared-ReLU variant.

    gelu:   c_proj(gelu_tanh(c_fc(x)))                 hidden 4C, as in GPT-2
    relu2:  c_proj(relu(c_fc(x)) ** 2)                 hidden 4C (So et al., Primer)
    swiglu: c_proj(silu(gate) * up), [gate, up] = c_fc(x)   hidden 8C/3 (Shazeer, 2020)

SwiGLU's c_fc makes two hidden vectors; its hidden width is 2/3 of 4C (rounded up to a multiple
of 8) so that its three matrices hold about as many parameters as the others' two.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.model.config import ModelConfig
from gptlab.model.hooks import HookPoint


def mlp_hidden_size(config: ModelConfig) -> int:
    if config.mlp == "swiglu":
        return -(-(8 * config.n_embd // 3) // 8) * 8
    return 4 * config.n_embd


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kind = config.mlp
        hidden = mlp_hidden_size(config)
        fc_out = 2 * hidden if self.kind == "swiglu" else hidden
        self.c_fc = nn.Linear(config.n_embd, fc_out, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.hook_pre = HookPoint()  # (B, T, hidden) before the nonlinearity (swiglu: the gate)
        self.hook_post = HookPoint()  # (B, T, hidden) after it (swiglu: silu(gate) * up)

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, fc_out) -> (B, T, hidden)."""
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            return F.silu(self.hook_pre(gate)) * up
        h = self.hook_pre(h)
        if self.kind == "relu2":
            return F.relu(h).square()
        return F.gelu(h, approximate="tanh")  # GPT-2 used the tanh approximation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.hook_post(self.activation(self.c_fc(x)))))
