"""Extra embeddings for small models: an exact bigram table, a smear gate, value embeddings.

Three cheap ways to hand a small model what it would otherwise spend layers computing, from the
GPU speedruns (modded-nanogpt's records, nanochat's dev log). Each is a table lookup or a gated
sum, almost free in FLOPs, and each enters through a learned scale or gate that starts at zero,
so an initialised model computes exactly what it would without them.

    bigram_embed   B[t] = table[(previous token, token)], one row per pair, no hashing:
                   (vocab_size + 1) x vocab_size rows of n_embd. Block i reads x + c_i * B
                   (c_i in Block, initialised to 0). With bigram_buckets = N the pairs are
                   hashed into N rows instead (modded-nanogpt's bigram hash embedding): a BPE
                   vocabulary of 8,192 tokens has 67M pairs, but a short training run meets a
                   few hundred thousand of them, so a table a few times the vocabulary holds
                   the frequent ones with few collisions. With trigram_buckets = M, B[t] also
                   adds a row of an M-row table for (token two back, previous, token), hashed
                   the same way: at the character level what a BPE bigram is (a 65-character
                   vocabulary has 279K triples; TinyShakespeare's text uses 11,556 of them).
    smear          e'[t] = e[t] + lambda * sigmoid(w . e[t][:24]) * e[t - 1]: each token
                   embedding takes a gated share of the one before it (lambda initialised to 0).
    value_embed    on every other layer (counting down from the last), attention's values get
                   v[t] += 2 * sigmoid(W x[t][:12]) * table[token t], one gate per key/value
                   head (the table initialised to 0, W to 0 so the gate starts at 1).

"Previous token": position 0 of a sequence has none (and positions 0 and 1 have no token two
back). The bigram table keeps one extra row per token for it (previous = vocab_size), the trigram
hash spells a missing token vocab_size too, and the smear adds nothing there. Whether a position
has a token d back is read from its position id (>= d), which is what makes left-padded batches
and the decoder's sliding window agree with a lone sequence; during cached decoding the tokens
before this call's first one come from the KV cache (tokens_back).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.model.config import ModelConfig
from gptlab.model.kv_cache import KVCacheLike

SMEAR_GATE_CHANNELS = 24  # how many of a token embedding's features the smear gate reads
VALUE_GATE_CHANNELS = 12  # how many of attention's input features a value-embedding gate reads


class Gate(nn.Module):
    """scale * sigmoid(x[..., :channels] @ weight^T): (..., C) -> (..., n_out), a learned gate
    in (0, scale) read from the first `channels` features.

    A plain parameter rather than an nn.Linear: the optimizer gives Muon the blocks' Linear
    weights, and a gate is a per-position dial, not a transform of the hidden state.
    """

    def __init__(self, channels: int, n_out: int = 1, scale: float = 1.0) -> None:
        super().__init__()
        self.channels, self.scale = channels, scale
        self.weight = nn.Parameter(torch.zeros(n_out, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.sigmoid(x[..., : self.channels] @ self.weight.T)


def tokens_back(
    idx: torch.Tensor, position_ids: torch.Tensor, kv_cache: KVCacheLike | None, distance: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T), present (B or 1, T) bool): the token `distance` places before each of this
    call's tokens idx (B, T); distance 1 is the previous token.

    The first columns read theirs from the cache when decoding continues a cached sequence. A
    position whose id is below `distance` has none (its sequence starts fewer tokens back), nor
    does a column that would reach before this call and the cache. Where present is False the id
    returned is meaningless (callers mask it).
    """
    cached = min(distance, kv_cache.seq_len) if kv_cache is not None else 0
    missing = distance - cached  # leading columns with nothing that far back
    before = [idx[:, :1].expand(-1, missing)]  # placeholders, masked below
    if cached:
        before.append(kv_cache.last_tokens(cached))
    back = torch.cat([*before, idx], dim=1)[:, : idx.shape[1]]
    present = position_ids >= distance
    if missing:
        present = present.clone()
        present[:, :missing] = False
    return back, present


# Odd multipliers for the bigram hash: multiplying by an odd number permutes the integers modulo
# any power of two, so for a fixed token distinct previous tokens land in distinct buckets when
# the bucket count is a power of two; the XOR mixes the two tokens' bits. Every product stays
# below 2**63 for any vocabulary under 2**31 tokens. The trigram hash XORs in a third.
BIGRAM_HASH_PREVIOUS = 1_000_003
BIGRAM_HASH_TOKEN = 2_654_435_761
TRIGRAM_HASH_TWO_BACK = 3_000_017


def bigram_rows(
    previous: torch.Tensor, idx: torch.Tensor, vocab_size: int, buckets: int | None
) -> torch.Tensor:
    """The bigram table's row for each (previous, token) pair (previous = vocab_size: none).

    Exact (buckets None): previous * vocab_size + token. Hashed: (previous * P XOR token * Q)
    modulo buckets, P and Q the odd constants above.
    """
    if buckets is None:
        return previous * vocab_size + idx
    mixed = (previous.long() * BIGRAM_HASH_PREVIOUS) ^ (idx.long() * BIGRAM_HASH_TOKEN)
    return torch.remainder(mixed, buckets)


def trigram_rows(
    two_back: torch.Tensor, previous: torch.Tensor, idx: torch.Tensor, buckets: int
) -> torch.Tensor:
    """The trigram table's row for each (two back, previous, token) triple (a missing token is
    vocab_size): (two_back * R XOR previous * P XOR token * Q) modulo buckets."""
    mixed = (
        (two_back.long() * TRIGRAM_HASH_TWO_BACK)
        ^ (previous.long() * BIGRAM_HASH_PREVIOUS)
        ^ (idx.long() * BIGRAM_HASH_TOKEN)
    )
    return torch.remainder(mixed, buckets)


class BigramEmbedding(nn.Module):
    """A bigram table: row previous * vocab_size + token (previous = vocab_size for none), or a
    hashed row among bigram_buckets (bigram_rows); with trigram_buckets, plus a row of a second,
    hashed table for (two back, previous, token) (trigram_rows)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.vocab_size, self.buckets = config.vocab_size, config.bigram_buckets
        self.table = nn.Embedding(config.bigram_parameters // config.n_embd, config.n_embd)
        self.trigram_buckets = config.trigram_buckets
        self.trigram_table = (
            nn.Embedding(config.trigram_buckets, config.n_embd)
            if config.trigram_buckets is not None
            else None
        )

    def forward(
        self, idx: torch.Tensor, back: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """(B, T) ids and the tokens before them, back[d - 1] = tokens_back(..., d) -> (B, T, C)."""
        before = [torch.where(present, ids, self.vocab_size) for ids, present in back]
        rows = self.table(bigram_rows(before[0], idx, self.vocab_size, self.buckets))
        if self.trigram_table is None:
            return rows
        return rows + self.trigram_table(
            trigram_rows(before[1], before[0], idx, self.trigram_buckets)
        )


class Smear(nn.Module):
    """e'[t] = e[t] + lambda * sigmoid(w . e[t][:24]) * e[t - 1] over token embeddings e."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate = Gate(min(SMEAR_GATE_CHANNELS, config.n_embd))
        self.strength = nn.Parameter(torch.zeros(1))  # lambda: 0, so no smear at initialisation

    def forward(
        self, tokens: torch.Tensor, first_previous: torch.Tensor, has_previous: torch.Tensor
    ) -> torch.Tensor:
        """What the smear adds to the token embeddings tokens (B, T, C): (B, T, C).

        first_previous: (B, 1, C) the embedding of the token before this call's first one
        (masked by has_previous when there is none).
        """
        before = torch.cat([first_previous, tokens[:, :-1]], dim=1)  # (B, T, C)
        before = before * has_previous.unsqueeze(-1).to(before.dtype)
        return self.strength * self.gate(tokens) * before


class ValueEmbedding(nn.Module):
    """A layer's token table (padded_vocab_size x kv_dim) added to its values through a gate per
    key/value head: v += 2 * sigmoid(W x[:12]) * table[idx]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_kv_head, self.head_dim = config.kv_heads, config.head_dim
        self.table = nn.Embedding(config.padded_vocab_size, config.kv_heads * config.head_dim)
        # Zero weights put the gate at 2 * sigmoid(0) = 1; its range is (0, 2).
        self.gate = Gate(min(VALUE_GATE_CHANNELS, config.n_embd), config.kv_heads, scale=2.0)

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """attention's input x (B, T, C) and ids (B, T) -> (B, n_kv_head, T, head_dim)."""
        B, T = idx.shape
        values = self.table(idx).view(B, T, self.n_kv_head, self.head_dim)
        gated = self.gate(x).unsqueeze(-1) * values  # (B, T, n_kv_head, head_dim)
        return gated.transpose(1, 2)
