"""Indices a user hands a tool: a layer, a head, a position in a prompt.

Each is checked against the model (or the prompt) once, here, with a one-line error that gives
the valid range; a valid negative layer or position counts from the end and comes back as the
equivalent non-negative index.
"""

from __future__ import annotations

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
