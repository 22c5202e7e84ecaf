"""Turning user text into the token ids the tools need, and token ids into readable labels.

Every tool takes text from the command line: a prompt, a target token, an answer. These helpers
check it once, in one place, with messages that show the tokenization so the user can fix it.
"""

from __future__ import annotations

import torch

from gptlab.device import model_device, require_memory
from gptlab.errors import GptlabError
from gptlab.tokenizers.base import Tokenizer


def token_label(tokenizer: Tokenizer, token_id: int) -> str:
    """One token as printable text: spaces kept, newlines and tabs escaped (for tables and plots)."""
    text = tokenizer.decode([int(token_id)])
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def token_labels(tokenizer: Tokenizer, ids) -> list[str]:
    return [token_label(tokenizer, i) for i in ids]


def show_tokens(tokenizer: Tokenizer, ids) -> str:
    """A tokenization for error messages: [' The', ' cat'] (3 tokens)."""
    return f"{token_labels(tokenizer, ids)} ({len(ids)} tokens)"


def encode_prompt(model, tokenizer: Tokenizer, text: str, min_tokens: int = 1) -> torch.Tensor:
    """The prompt as a (1, T) tensor of token ids on the model's device."""
    ids = tokenizer.encode(text)
    if len(ids) < min_tokens:
        raise GptlabError(
            f"the prompt {text!r} is {len(ids)} token(s) but this needs at least {min_tokens}; "
            "give a longer --prompt"
        )
    block_size = model.config.block_size
    if len(ids) > block_size:
        raise GptlabError(
            f"the prompt is {len(ids)} tokens, longer than the model's block_size ({block_size}); "
            "shorten it"
        )
    return torch.tensor([ids], dtype=torch.long, device=model_device(model))


def single_token(tokenizer: Tokenizer, text: str, option: str) -> int:
    """The id of `text`, which must be exactly one token (for --target, --answer, --token ...)."""
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise GptlabError(
            f"{option} {text!r} is {show_tokens(tokenizer, ids)}, not one token; give text that "
            "is a single token (GPT-2 words usually start with a space, e.g. ' Paris')"
        )
    return ids[0]


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
