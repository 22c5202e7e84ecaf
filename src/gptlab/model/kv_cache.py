"""Key/value cache for incremental decoding.

During generation each new token only needs its own query; the keys and values of the tokens
before it do not change, so we keep them instead of recomputing the whole prefix every step.

KVCacheLike is what the model asks of a cache. KVCache grows by concatenation: its keys are
exactly the positions seen so far. The preallocated StaticKVCache (gptlab.model.static_cache)
keeps one shape for the whole generation.
"""

from __future__ import annotations

from typing import Protocol

import torch


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

    def crop(self, n: int) -> None:
        """Forget every position from n on (speculative decoding drops rejected tokens)."""
        ...

    def reset(self) -> None:
        """Forget everything: the cache can start a new sequence."""
        ...


class KVCache:
    """A growing per-layer cache of keys and values, each (B, n_head, T_past, head_dim)."""

    def __init__(self, n_layer: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    @property
    def seq_len(self) -> int:
        """How many positions are cached (the same for every layer between forward passes)."""
        k = self.keys[0]
        return 0 if k is None else k.shape[2]

    def key_len(self, new_tokens: int) -> int:
        """How many keys attention sees after this call appends `new_tokens` positions."""
        return self.seq_len + new_tokens

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v for `layer`; return all keys and values so far."""
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)
        return self.keys[layer], self.values[layer]

    def crop(self, n: int) -> None:
        """Forget every position from n on (speculative decoding drops rejected tokens)."""
        self.keys = [None if k is None else k[:, :, :n] for k in self.keys]
        self.values = [None if v is None else v[:, :, :n] for v in self.values]

    def reset(self) -> None:
        self.keys = [None] * len(self.keys)
        self.values = [None] * len(self.values)
