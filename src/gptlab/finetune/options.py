"""What every fine-tuning run shares: its options, the seed, and the starting model made trainable."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gptlab.checkpoints.finetuned import load_init_model
from gptlab.errors import GptlabError
from gptlab.finetune.loop import FitConfig
from gptlab.finetune.trainable import TrainableSpec, set_trainable
from gptlab.model.gpt import GPT
from gptlab.model.lora import LoRAConfig, add_lora
from gptlab.tokenizers.base import Tokenizer

Log = Callable[[str], None]


@dataclass
class FinetuneOptions:
    data: str  # the data file
    init: str  # a gptlab model/run folder, or hf:NAME
    out: str  # the output folder
    epochs: int = 3
    lr: float = 5e-5
    weight_decay: float = 0.1
    warmup_steps: int = 0
    batch_size: int = 8
    max_length: int | None = None  # tokens per example; None: the model's block_size
    train: str = "all"  # head | last-K | all (see gptlab.finetune.trainable)
    lora: LoRAConfig | None = None  # LoRA instead of updating the base weights
    merge: bool = False  # with LoRA: also save the merged model folder
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 123
    max_seconds: float | None = None  # a training-time budget
    device: str = "auto"
    overwrite: bool = False

    def check(self) -> None:
        if self.batch_size < 1:
            raise GptlabError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise GptlabError(f"--max-length must be >= 2, got {self.max_length}")
        if not self.init.startswith("hf:") and not Path(self.init).exists():
            raise GptlabError(
                f"--init {self.init} does not exist: give a gptlab model or training-run folder, or hf:NAME"
            )
        if self.merge and self.lora is None:
            raise GptlabError("--merge folds a LoRA adapter into the model; it needs --lora-rank")

    def fit_config(self) -> FitConfig:
        """The optimisation settings for the fine-tuning loop."""
        return FitConfig(
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            max_seconds=self.max_seconds,
        )


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch, so a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def max_length_for(options: FinetuneOptions, body: GPT) -> int:
    block_size = body.config.block_size
    if options.max_length is None:
        return block_size
    if options.max_length > block_size:
        raise GptlabError(
            f"--max-length {options.max_length} is longer than the model's context ({block_size} tokens); "
            f"use at most {block_size}"
        )
    return options.max_length


def pad_id_for(tokenizer: Tokenizer) -> int:
    """GPT-2 style tokenizers pad with end-of-text; others (char) with 0, which is safe because
    padding never reaches a real position (right padding, causal attention) nor the loss (-100)."""
    return tokenizer.eot_id if tokenizer.eot_id is not None else 0


def load_trainable_model(
    options: FinetuneOptions, device: torch.device, log: Log
) -> tuple[GPT, Tokenizer]:
    """The --init model on `device`, with LoRA adapters added or the --train parameters unfrozen."""
    body, tokenizer = load_init_model(options.init, device)
    if options.lora is not None:
        wrapped = add_lora(body, options.lora)
        log(
            f"LoRA rank {options.lora.rank}, alpha {options.lora.alpha:g} on {len(wrapped)} layers "
            f"({', '.join(options.lora.targets)}); base weights frozen"
        )
    else:
        set_trainable(body, TrainableSpec.parse(options.train, body.config.n_layer))
    return body.to(device), tokenizer
