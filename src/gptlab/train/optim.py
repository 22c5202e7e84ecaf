"""The optimizer and the learning-rate schedule.

Weight decay pulls weights towards zero. It is applied to the 2-D tensors (the matmul weights and
the embeddings) and not to biases and LayerNorm gains, whose job is to shift and scale, as in
GPT-2/GPT-3 training.

The schedule: linear warmup over `warmup_steps` to `lr`, then a cosine from `lr` down to `min_lr`
over the rest of the budget:

    step < warmup:  lr * (step + 1) / warmup
    afterwards:     min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * progress))

where `progress` (0 -> 1) is how far the run is through its budget after warmup: by steps, by
training seconds, or whichever is further along when both are set.
"""

from __future__ import annotations

import math

import torch

from gptlab.run_config import TrainConfig


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: 2-D+ tensors with weight decay, the rest (biases, norms) without.

    The tied lm_head/wte matrix is one Parameter, so it appears once (model.parameters() and
    named_parameters() never yield a shared tensor twice).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: torch.nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    # The fused kernel does the whole update in a few launches on CUDA; on CPU the default
    # (foreach) implementation is the fast one.
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        fused=device.type == "cuda",
    )


def schedule_progress(step: int, elapsed_s: float, config: TrainConfig) -> float:
    """How far through the post-warmup budget the run is, in [0, 1]."""
    fractions = []
    if config.max_steps is not None:
        decay_steps = max(config.max_steps - config.warmup_steps, 1)
        fractions.append((step - config.warmup_steps) / decay_steps)
    if config.max_seconds is not None:
        fractions.append(elapsed_s / config.max_seconds)
    return min(max(max(fractions), 0.0), 1.0)


def learning_rate(step: int, progress: float, config: TrainConfig) -> float:
    """The learning rate for optimizer step `step` (0-based) at budget `progress`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return config.min_lr + (config.lr - config.min_lr) * cosine


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
