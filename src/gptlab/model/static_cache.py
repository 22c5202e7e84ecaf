"""Static-shape decoding: a preallocated KV cache (what lets torch.compile reuse one decode graph).

StaticKVCache is preallocated to max_len positions and written in place; it keeps the
KVCacheLike protocol (gptlab.model.kv_cache) as KVCache does. Its tensors keep one shape for the
whole generation: no reallocation per token, and torch.compile sees the same shapes every step.
The slots not yet written are hidden by the causal mask, since they lie after every query.
"""

from __future__ import annotations

import torch


class StaticKVCache:
    """Keys and values preallocated as (B, n_head, max_len, head_dim) per layer, written in place.

    `update` returns the whole buffers (max_len keys); `key_len` tells the model so, and its causal
    mask then hides the slots at or after the end of the sequence.
    """

    def __init__(
        self,
        n_layer: int,
        batch: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch, n_head, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        # Token ids by position, for models that read the tokens before each one (bigram_embed, smear).
        self.tokens = torch.zeros(batch, max_len, dtype=torch.long, device=device)
        self.max_len = max_len
        self._len = 0  # positions written by completed forward passes

    @classmethod
    def for_model(cls, model, batch: int, max_len: int) -> StaticKVCache:
        """A cache that fits `model` (its shape, dtype and device) for `batch` rows."""
        config = model.config
        embedding = model.wte.weight  # never quantized: its dtype is the activations' dtype
        return cls(
            config.n_layer,
            batch,
            config.kv_heads,  # grouped-query attention caches only n_kv_head heads
            max_len,
            config.head_dim,
            dtype=embedding.dtype,
            device=embedding.device,
        )

    @property
    def seq_len(self) -> int:
        return self._len

    def key_len(self, new_tokens: int) -> int:
        if self._len + new_tokens > self.max_len:
            raise ValueError(
                f"static KV cache of {self.max_len} positions cannot take "
                f"{self._len} + {new_tokens}; allocate it with a larger max_len"
            )
        return self.max_len

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's k, v (B, n_head, T, head_dim) at positions seq_len.. of `layer`."""
        start, end = self._len, self._len + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        if layer == len(self.keys) - 1:  # the forward pass is complete: every layer has T more
            self._len = end
        return self.keys[layer], self.values[layer]

    def record_tokens(self, idx: torch.Tensor) -> None:
        """Keep this pass's token ids (B, T) at positions seq_len.. (before the layers' updates)."""
        self.tokens[:, self._len : self._len + idx.shape[1]] = idx

    def last_tokens(self, n: int) -> torch.Tensor:
        """(B, n) the recorded token ids at positions seq_len - n .. seq_len - 1 (n <= seq_len)."""
        return self.tokens[:, self._len - n : self._len]

    def crop(self, n: int) -> None:
        """Forget every position from n on; the stale slots are masked until overwritten."""
        self._len = min(self._len, n)

    def reset(self) -> None:
        self._len = 0
