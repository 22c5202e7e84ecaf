"""Helpers shared by the generation tests (not a test module itself)."""

from __future__ import annotations

import torch

from gptlab.config import ModelConfig
from gptlab.model import GPT


def spiky_model(config: ModelConfig, seed: int = 0) -> GPT:
    """A random model with large weights, so greedy decoding wanders instead of repeating one token."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    return model
