"""Nearest tokens in the token embedding (wte), by cosine similarity."""

from __future__ import annotations

import torch

from gptlab.interp.tokens import token_label
from gptlab.tables import format_table, quoted
from gptlab.tokenizers.base import Tokenizer


@torch.no_grad()
def nearest_tokens(model, token_id: int, k: int = 10) -> list[tuple[int, float]]:
    """The k tokens whose embeddings point most nearly the same way as token_id's (itself excluded).

    Returns [(token id, cosine similarity)], most similar first. Vocabulary padding rows are
    never real tokens and are left out.
    """
    vocab_size = model.config.vocab_size
    embeddings = model.wte.weight[:vocab_size].float()  # (V, C)
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    similarity = unit @ unit[token_id]  # (V,)
    similarity[token_id] = float("-inf")
    values, ids = similarity.topk(min(k, vocab_size - 1))
    return [(int(i), float(v)) for i, v in zip(ids, values, strict=True)]


def neighbors_table(tokenizer: Tokenizer, token_id: int, neighbors: list[tuple[int, float]]) -> str:
    rows = [
        [rank, quoted(token_label(tokenizer, i)), i, cosine]
        for rank, (i, cosine) in enumerate(neighbors, start=1)
    ]
    return (
        f"nearest tokens to {quoted(token_label(tokenizer, token_id))} (id {token_id}) "
        f"in the token embedding:\n" + format_table(["rank", "token", "id", "cosine"], rows)
    )
