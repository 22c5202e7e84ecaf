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
                   the frequent ones with few collisions.
    smear          e'[t] = e[t] + lambda * sigmoid(w . e[t][:24]) * e[t - 1]: each token
                   embedding takes a gated share of the one before it (lambda initialised to 0).
    value_embed    on every other layer (counting down from the last), attention's values get
                   v[t] += 2 * sigmoid(W x[t][:12]) * table[token t], one gate per key/value
                   head (the table initialised to 0, W to 0 so the gate starts at 1).

"Previous token": position 0 of a sequence has none. The bigram table keeps one extra row per
token for it (previous = NO_PREVIOUS, i.e. vocab_size), and the smear adds nothing there. Whether
a position has a previous token is read from its position id (0 = the first of its sequence),
which is what makes left-padded batches and the decoder's sliding window agree with a lone
sequence; during cached decoding the token before this call's first one comes from the KV cache.
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


def previous_tokens(
    idx: torch.Tensor, position_ids: torch.Tensor, kv_cache: KVCacheLike | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(previous token ids (B, T), has_previous (B or 1, T) bool) for this call's tokens idx (B, T).

    The first column's previous token is the cache's last one when decoding continues a cached
    sequence; a position whose id is 0 starts its sequence and has none. Where has_previous is
    False the id returned is meaningless (callers mask it).
    """
    continues = kv_cache is not None and kv_cache.seq_len > 0
    first = kv_cache.last_token() if continues else idx[:, :1]  # (B, 1)
    previous = torch.cat([first, idx[:, :-1]], dim=1)
    has_previous = position_ids > 0
    if not continues:  # nothing before this call: its first token starts the sequence
        has_previous = has_previous.clone()
        has_previous[:, 0] = False
    return previous, has_previous


# Odd multipliers for the bigram hash: multiplying by an odd number permutes the integers modulo
# any power of two, so for a fixed token distinct previous tokens land in distinct buckets when
# the bucket count is a power of two; the XOR mixes the two tokens' bits. Both products stay
# below 2**63 for any vocabulary under 2**31 tokens.
BIGRAM_HASH_PREVIOUS = 1_000_003
BIGRAM_HASH_TOKEN = 2_654_435_761


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


class BigramEmbedding(nn.Module):
    """A bigram table: row previous * vocab_size + token (previous = vocab_size for none), or a
    hashed row among bigram_buckets (bigram_rows)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.vocab_size, self.buckets = config.vocab_size, config.bigram_buckets
        self.table = nn.Embedding(config.bigram_parameters // config.n_embd, config.n_embd)

    def forward(
        self, idx: torch.Tensor, previous: torch.Tensor, has_previous: torch.Tensor
    ) -> torch.Tensor:
        """(B, T) ids and their previous tokens -> (B, T, n_embd)."""
        no_previous = torch.full_like(previous, self.vocab_size)
        previous = torch.where(has_previous, previous, no_previous)
        return self.table(bigram_rows(previous, idx, self.vocab_size, self.buckets))


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
