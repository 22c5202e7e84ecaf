"""load_model: the public `gptlab.load_model`, for every folder gptlab writes a model into.

A model folder, a training run folder (its best checkpoint, else its latest; RUN@last, RUN@N),
a fine-tuned folder or an unmerged LoRA folder (its base with the adapter applied): whatever
gptlab.checkpoints.open.open_model opens, with the tokenizer optional.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptlab.checkpoints.open import open_model
from gptlab.model.gpt import GPT
from gptlab.tokenizers.base import Tokenizer


def load_model(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[GPT, Tokenizer | None]:
    """(model, tokenizer) from a gptlab folder; the tokenizer is None when the folder has none."""
    return open_model(directory, device, require_tokenizer=False)
