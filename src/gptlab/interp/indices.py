"""Indices and sizes a user hands a tool: a layer, a head, a position in a prompt, a batch.

Each is checked against the model (or the prompt) once, here, with a one-line error that gives
the valid range; a valid negative layer or position counts from the end and comes back as the
equivalent non-negative index.
"""

from __future__ import annotations

from gptlab.device import model_device, require_memory
from gptlab.errors import GptlabError


def check_layer(model, layer: int) -> int:
    n_layer = model.config.n_layer
    if not -n_layer <= layer < n_layer:
        raise GptlabError(f"layer {layer} is out of range: this model has layers 0..{n_layer - 1}")
    return layer % n_layer


def check_head(model, head: int) -> int:
    n_head = model.config.n_head
    if not 0 <= head < n_head:  # no counting from the end: "head -1" is more likely a slip
        raise GptlabError(f"head {head} is out of range: this model has heads 0..{n_head - 1}")
    return head


def check_position(length: int, position: int) -> int:
    if not -length <= position < length:
        raise GptlabError(
            f"position {position} is out of range for a {length}-token prompt "
            f"(use 0..{length - 1}, or negative numbers counting from the end)"
        )
    return position % length


def require_forward_fits(model, batch: int, length: int, what: str) -> None:
    """Refuse, before anything is allocated, a batch whose forward pass cannot fit: its logits
    (B, T, vocab), every layer's attention patterns (B, heads, T, T) as the tools keep them, and
    the residual stream's activations (an inspect tool with --batch 1000000 was killed by the
    kernel at 23.6 GB, not refused)."""
    if batch < 1 or length < 1:
        raise GptlabError(f"{what}: the batch and the length must be at least 1")
    c = model.config
    floats = batch * length * (c.padded_vocab_size + c.n_layer * (c.n_head * length + 4 * c.n_embd))
    require_memory(4 * floats, what, model_device(model))
