"""Which parameters of a pretrained GPT a fine-tuning run updates.

    head      only the new task head (a linear probe on the frozen model)
    last-K    the last K transformer blocks and the final LayerNorm (which reads their output),
              plus the head; the book's classifier trains last-1
    all       every parameter, embeddings included

With LoRA the base model stays frozen whatever this says: only the adapters (and a task head)
train.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from gptlab.checkpoints.open import open_model
from gptlab.errors import GptlabError
from gptlab.finetune.options import FinetuneOptions, Log
from gptlab.model.gpt import GPT
from gptlab.model.lora import add_lora
from gptlab.tokenizers.base import Tokenizer


@dataclass(frozen=True)
class TrainableSpec:
    text: str  # as the user wrote it: head, last-K or all
    last_blocks: int | None  # blocks to train from the top; None means everything

    @classmethod
    def parse(cls, text: str, n_layer: int) -> TrainableSpec:
        if text == "all":
            return cls(text, None)
        if text == "head":
            return cls(text, 0)
        match = re.fullmatch(r"last-(\d+)", text)
        if match is None:
            raise GptlabError(f"train {text!r} is not one of head, last-K (e.g. last-2) or all")
        k = int(match.group(1))
        if not 1 <= k <= n_layer:
            raise GptlabError(
                f"train={text}: the model has {n_layer} blocks; use last-1 .. last-{n_layer} or all"
            )
        return cls(text, k)


def set_trainable(body: GPT, spec: TrainableSpec) -> None:
    """Set requires_grad on the body's parameters as `spec` says (a task head is not touched)."""
    train_all = spec.last_blocks is None
    for param in body.parameters():
        param.requires_grad_(train_all)
    if train_all or spec.last_blocks == 0:
        return
    for block in body.blocks[-spec.last_blocks :]:
        block.requires_grad_(True)
    body.ln_f.requires_grad_(True)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a tied tensor counts once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def describe_parameters(model: nn.Module) -> str:
    trainable, total = count_parameters(model)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"


def load_trainable_model(
    options: FinetuneOptions, device: torch.device, log: Log
) -> tuple[GPT, Tokenizer]:
    """The `init` model on `device`, with LoRA adapters added or the `train` parameters unfrozen."""
    body, tokenizer = open_model(options.init, device)
    lora = options.lora()
    if lora is not None:
        wrapped = add_lora(body, lora)
        log(
            f"LoRA rank {lora.rank}, alpha {lora.alpha:g} on {len(wrapped)} layers "
            f"({', '.join(lora.targets)}); base weights frozen"
        )
    else:
        set_trainable(body, TrainableSpec.parse(options.train, body.config.n_layer))
    return body.to(device), tokenizer
