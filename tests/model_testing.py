"""Helpers shared by the generation tests (not a test module itself)."""

from __future__ import annotations

import torch

from gptlab.model import GPT
from gptlab.model.config import ModelConfig


def spiky_model(config: ModelConfig, seed: int = 0) -> GPT:
    """A random model with large weights, so greedy decoding wanders instead of repeating one token."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    return model


def save_tiny_gpt2_model(folder, block_size: int):
    """A tiny random model with the GPT-2 tokenizer, saved as a model folder; returns the folder."""
    from gptlab.checkpoints.model_folder import save_model
    from gptlab.tokenizers.base import GPT2Tokenizer

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50257, block_size=block_size, n_layer=2, n_head=2, n_embd=16)
    save_model(folder, GPT(config), GPT2Tokenizer())
    return folder
