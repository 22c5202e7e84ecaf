"""Model FLOPs utilisation (MFU): the share of the GPU's peak the training actually uses.

FLOPs per token of a training step follow the PaLM paper's accounting (appendix B): every
parameter costs 6 FLOPs per token (2 forward, 4 backward) and attention adds 12 * n_layer * T *
n_embd for the score and value matmuls over a context of T. Recomputation and non-matmul work are
not counted, which is what makes MFU comparable across implementations.
"""

from __future__ import annotations

import torch

from gptlab.model.config import ModelConfig

# Dense (no sparsity) bf16 tensor-core peaks with fp32 accumulation, from NVIDIA's datasheets.
# Matched by substring of torch.cuda.get_device_name(), most specific first.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989e12),
    ("H20", 148e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),  # the A10 (not the A10G, whose peak NVIDIA does not publish as such)
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


def flops_per_token(config: ModelConfig, num_parameters: int) -> float:
    """Training FLOPs per token: 6N for the weights plus attention over the full context.

    Tables that are only looked up, never multiplied, cost no FLOPs: the learned position table
    (rope and none have none), the token embedding when the head has its own matrix (tied,
    the same matrix is the head's matmul and counts), the bigram and trigram tables and the value
    embeddings.
    """
    lookup_only = config.block_size * config.n_embd if config.pos == "learned" else 0
    if not config.tie_weights:
        lookup_only += config.padded_vocab_size * config.n_embd
    if config.bigram_embed:
        lookup_only += config.bigram_parameters + config.trigram_parameters
    value_table = config.padded_vocab_size * config.kv_heads * config.head_dim
    lookup_only += len(config.value_embed_layers()) * value_table
    non_embedding = num_parameters - lookup_only
    attention = 12 * config.n_layer * config.block_size * config.n_embd
    return 6 * non_embedding + attention


def peak_flops(device_name: str) -> float | None:
    """The bf16 peak of a GPU by its name, or None when unknown (then no MFU is claimed)."""
    if "A10G" in device_name:
        return None
    for key, flops in PEAK_BF16_FLOPS:
        if key in device_name:
            return flops
    return None


def device_peak_flops(device) -> float | None:
    if device.type != "cuda":
        return None
    return peak_flops(torch.cuda.get_device_name(device))


def mfu(
    tokens_per_s: float, flops_per_token_: float, peak: float | None, world_size: int = 1
) -> float | None:
    """Achieved FLOP/s over the peak of all the GPUs used, in [0, 1]; None without a known peak."""
    if peak is None:
        return None
    return tokens_per_s * flops_per_token_ / (peak * world_size)
