"""Helpers shared by the tests/test_explore_*.py files (not a test module itself): a tiny GPT-2
tokenizer model folder and a run folder holding a checkpoint, metrics and samples."""

from __future__ import annotations

import json
import re

import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.checkpoints.run import save_checkpoint
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import GPT2Tokenizer

PROMPT = "The capital of France is"


def tiny_model(seed: int = 0) -> GPT:
    """Two layers of three heads with large random weights: sharp attention, varied predictions."""
    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=50257, block_size=64, n_layer=2, n_head=3, n_embd=24))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
            elif name.endswith("bias"):
                param.normal_(0.0, 0.1)
    return model.eval()


def model_folder(path):
    save_model(path, tiny_model(), GPT2Tokenizer())
    return path


def metrics_records(steps: int) -> list[dict]:
    return [
        {
            "step": step,
            "tokens": step * 1024,
            "elapsed_s": step * 0.5,
            "lr": 1e-3 * min(1.0, step / 5),
            "train_loss": 10.0 / (1 + 0.2 * step),
            "grad_norm": 1.0 + 0.1 * (step % 3),
            "tokens_per_s": 2000.0 + step,
            **({"val_loss": 9.0 / (1 + 0.2 * step)} if step % 5 == 0 else {}),
        }
        for step in range(1, steps + 1)
    ]


def run_folder(path, steps: int = 20):
    """A run folder as the trainer leaves it (one checkpoint, metrics.jsonl, samples.txt)."""
    save_checkpoint(
        path,
        model=tiny_model(),
        tokenizer=GPT2Tokenizer(),
        info={"step": steps, "tokens": steps * 1024, "elapsed_s": 1.0, "val_loss": 2.0},
        training_state={},
        keep_last=2,
    )
    (path / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in metrics_records(steps)), encoding="utf-8"
    )
    (path / "samples.txt").write_text(
        "=== step 10 ===\nfirst sample\n\n=== step 20 ===\nsecond\nsample\n\n", encoding="utf-8"
    )
    return path


def exported_data(page: str) -> dict:
    """window.GPTLAB_EXPORT of an exported page (gptlab explore --export), parsed."""
    match = re.search(r"<script>window.GPTLAB_EXPORT = (.*?);</script>", page, re.DOTALL)
    return json.loads(match.group(1).replace("<\\/", "</"))
