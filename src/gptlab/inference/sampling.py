"""Logits processors and the choice of the next token.

    logits of the next token (B, vocab)
      -> repetition penalty -> temperature -> top-k -> top-p    in Hugging Face's order
      -> argmax (greedy) or a draw from the softmax

Numerically empty distributions: a temperature such as 1e-45 divides the logits into +-inf, whose
softmax is NaN, and a row can lose every token to underflow. Such a row is the limit of the
settings (a temperature towards 0 is greedy), so it takes the argmax of its unfiltered logits
instead of failing in torch.multinomial; rows whose distribution is fine are drawn exactly as
before, and the check needs no synchronisation (one torch.where).
"""

from __future__ import annotations

import torch

from gptlab.inference.config import GenerationConfig


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """CTRL's penalty, as Hugging Face applies it: for tokens already seen (seen: (B, V) bool),
    positive logits are divided by `penalty` and negative ones multiplied, so both move down."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row; the rest become -inf (never sampled)."""
    if k >= logits.size(-1):
        return logits
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of the tokens ranked above
    drop_sorted = mass_before >= p  # the set already reached p without this token (top-1 is kept)
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def penalize(
    logits: torch.Tensor, config: GenerationConfig, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, V) logits in fp32 with the repetition penalty applied when the config asks for it."""
    logits = logits.float()
    if config.repetition_penalty != 1.0 and seen is not None:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    return logits


def sampling_filters(logits: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    """Temperature, then top-k, then top-p: (B, V) -> (B, V), -inf for cut tokens."""
    logits = logits / config.temperature
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    return top_p_filter(logits, config.top_p)


def shape_logits(
    logits: torch.Tensor, config: GenerationConfig, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """The processors the config asks for, in order: (B, V) -> (B, V) logits the next token is
    drawn from (-inf for cut tokens). Greedy decoding applies only the repetition penalty, then
    takes the argmax."""
    penalized = penalize(logits, config, seen)
    return penalized if config.greedy else sampling_filters(penalized, config)


def draw_probabilities(
    logits: torch.Tensor, config: GenerationConfig, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, V) the probability each token is chosen with under the config: one-hot on the argmax
    when greedy, or when a row's distribution is numerically empty (see the module docstring)."""
    penalized = penalize(logits, config, seen)
    argmax = torch.zeros_like(penalized).scatter_(-1, penalized.argmax(-1, keepdim=True), 1.0)
    if config.greedy:
        return argmax
    probs = torch.softmax(sampling_filters(penalized, config), dim=-1)
    usable = torch.isfinite(probs).all(-1, keepdim=True) & (probs.sum(-1, keepdim=True) > 0)
    return torch.where(usable, probs, argmax)


def choose_next_tokens(
    logits: torch.Tensor,
    config: GenerationConfig,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply the processors the config asks for, then pick one token per row: (B, V) -> (B,)."""
    if config.greedy:
        return shape_logits(logits, config, seen).argmax(dim=-1)
    probs = draw_probabilities(logits, config, seen)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
