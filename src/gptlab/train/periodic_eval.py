"""What the trainer measures besides the training loss: held-out loss, samples, extra evals."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gptlab.inference.config import GenerationConfig
from gptlab.inference.generate import generate_text
from gptlab.train.distributed import DistributedContext, mean_across_ranks


@dataclass
class PeriodicEval:
    """An extra evaluation the trainer runs every `every` steps and at the end (on rank 0).

    `run(model, tokenizer)` gets the plain model in eval mode and returns numbers to log, e.g.
    {"hellaswag_acc_norm": 0.29}; they are added to that step's metrics.jsonl record.
    """

    every: int
    run: Callable[[torch.nn.Module, object], dict[str, float]]


@torch.no_grad()
def mean_loss(
    model: torch.nn.Module, batches, autocast, context: DistributedContext, device: torch.device
) -> float:
    """Mean cross-entropy over `batches` (an iterable of (x, y)), averaged over all ranks.

    Every batch has the same shape, so the mean of batch means is the mean over tokens.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        with autocast:
            _, loss = model(x, y)
        total += loss.item()
        count += 1
    model.train(was_training)
    (mean,) = mean_across_ranks([total / max(count, 1)], context, device)
    return mean


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf  # exp overflows a float past ~709


def sample_text(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> str:
    """A sample continuing `prompt`, drawn from its own seeded generator (training RNGs untouched)."""
    was_training = model.training
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    (generation,) = generate_text(model, tokenizer, prompt, config)
    model.train(was_training)
    return prompt + generation.text
