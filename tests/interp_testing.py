"""Helpers shared by the tests/test_interp_*.py files (not a test module itself)."""

from __future__ import annotations

import torch

from gptlab.model import GPT
from gptlab.model.config import ModelConfig


def random_model(seed: int = 0, **overrides) -> GPT:
    """A tiny GPT in eval mode whose biases and LayerNorm parameters are random too.

    GPT-2's init sets biases to 0 and LayerNorm scales to 1, which would hide mistakes in how a
    tool handles them; random values make every term count.
    """
    shape = dict(vocab_size=61, block_size=24, n_layer=3, n_head=4, n_embd=32)
    config = ModelConfig(**{**shape, **overrides})
    torch.manual_seed(seed)
    model = GPT(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.1)
            elif ".ln_" in name or name.startswith("ln_f"):
                param.normal_(1.0, 0.2)
            else:
                param.mul_(5.0)  # sharper attention and logits than the 0.02 init
    return model.eval().requires_grad_(False)  # tools read models; nothing here needs gradients


def random_tokens(model: GPT, length: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)
