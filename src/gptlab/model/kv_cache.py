"""Key/value cache for incremental decoding.

During generation each new token only needs its own query; the keys and values of the tokens
before it do not change, so we keep them instead of recomputing the whole prefix every step.

KVCacheLike is what the model asks of a cache. KVCache grows as the sequence does, but not by
concatenation: each layer's keys and values live in a buffer allocated CHUNK positions at a time,
a step writes its new positions in place, and attention reads a view of the positions written so
far. A `torch.cat` per layer per step copied the whole cache every token (O(T) bytes and one more
parallel kernel each time: on a busy 2-core CPU, a third of a GPT-2 step). The preallocated
StaticKVCache (gptlab.model.static_cache) keeps one shape for the whole generation.
"""

from __future__ import annotations

from typing import Protocol

import torch

CHUNK = 128  # positions added to a buffer when it is full


class KVCacheLike(Protocol):
    """The interface GPT.forward and the decoders use; KVCache and StaticKVCache both keep it."""

    @property
    def seq_len(self) -> int:
        """How many positions are cached (the same for every layer between forward passes)."""
        ...

    def key_len(self, new_tokens: int) -> int:
        """How many keys attention sees after this call appends `new_tokens` positions."""
        ...

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this pass's k, v (B, n_kv_head, T, head_dim) for `layer`; return the keys and
        values attention reads (B, n_kv_head, key_len, head_dim)."""
        ...

    def record_tokens(self, idx: torch.Tensor) -> None:
        """Keep this pass's token ids (B, T) at positions seq_len.. (called before the layers'
        updates, by models that read the tokens before each one: bigram_embed, smear)."""
        ...

    def last_tokens(self, n: int) -> torch.Tensor:
        """(B, n) the recorded token ids at positions seq_len - n .. seq_len - 1 (n <= seq_len)."""
        ...

    def crop(self, n: int) -> None:
        """Forget every position from n on (speculative decoding drops rejected tokens)."""
        ...

    def reset(self) -> None:
        """Forget everything: the cache can start a new sequence."""
        ...


class KVCache:
    """Per-layer keys and values, each a buffer (B, n_head, capacity, head_dim) of which the
    first seq_len positions are written."""

    def __init__(self, n_layer: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer
        self.tokens: torch.Tensor | None = None  # (B, capacity) ids, when the model records them
        self._len = 0  # positions written by completed forward passes

    @property
    def seq_len(self) -> int:
        """How many positions are cached (the same for every layer between forward passes)."""
        return self._len

    def key_len(self, new_tokens: int) -> int:
        """How many keys attention sees after this call appends `new_tokens` positions."""
        return self._len + new_tokens

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's k, v (B, n_head, T, head_dim) for `layer`; return views of all keys
        and values so far (B, n_head, seq_len + T, head_dim)."""
        start, end = self._len, self._len + k.shape[2]
        buffer = self.keys[layer]
        if buffer is None or buffer.shape[2] < end or buffer.shape[:2] != k.shape[:2]:
            self.keys[layer] = self._grown(buffer, k, start, end)
            self.values[layer] = self._grown(self.values[layer], v, start, end)
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        if layer == len(self.keys) - 1:  # the forward pass is complete: every layer has T more
            self._len = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def record_tokens(self, idx: torch.Tensor) -> None:
        """Keep this pass's token ids (B, T) at positions seq_len.. (before the layers' updates)."""
        start, end = self._len, self._len + idx.shape[1]
        if (
            self.tokens is None
            or self.tokens.shape[1] < end
            or self.tokens.shape[0] != idx.shape[0]
        ):
            grown = idx.new_zeros(idx.shape[0], -(-end // CHUNK) * CHUNK)
            if self.tokens is not None and start > 0:
                grown[:, :start] = self.tokens[:, :start]
            self.tokens = grown
        self.tokens[:, start:end] = idx

    def last_tokens(self, n: int) -> torch.Tensor:
        """(B, n) the recorded token ids at positions seq_len - n .. seq_len - 1 (n <= seq_len)."""
        return self.tokens[:, self._len - n : self._len]

    @staticmethod
    def _grown(
        buffer: torch.Tensor | None, new: torch.Tensor, start: int, end: int
    ) -> torch.Tensor:
        """A buffer with room for `end` positions (rounded up to CHUNK), holding the first
        `start` positions of the old one."""
        B, H, _, D = new.shape
        capacity = -(-end // CHUNK) * CHUNK
        grown = new.new_empty(B, H, capacity, D)
        if buffer is not None and start > 0:
            grown[:, :, :start] = buffer[:, :, :start]
        return grown

    def crop(self, n: int) -> None:
        """Forget every position from n on (speculative decoding drops rejected tokens)."""
        self._len = min(self._len, n)

    def reset(self) -> None:
        self.keys = [None] * len(self.keys)
        self.values = [None] * len(self.values)
        self.tokens = None
        self._len = 0
