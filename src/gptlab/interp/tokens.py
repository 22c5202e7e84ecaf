"""Turning user text into the token ids the tools need, and token ids into readable labels.

Every tool takes text from the command line: a prompt, a target token, an answer. These helpers
check it once, in one place, with messages that show the tokenization so the user can fix it.
"""

from __future__ import annotations

import torch

from gptlab.device import model_device
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
            "give a longer prompt"
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
