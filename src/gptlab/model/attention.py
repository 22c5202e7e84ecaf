"""Causal self-attention: the mask, what a layer's attention reads besides x, and the heads.

    q, k, v = split(c_attn(x))                  one matmul; k and v may have fewer heads (GQA)
    v += value embedding                        (value_embed layers only; see embeddings.py)
    q, k = qk_norm(q), qk_norm(k); rotate by position (rope)
    y = softmax(q k^T * scale + causal mask) v, per head   scale: 1/sqrt(head_dim) or attn_scale
    out = c_proj(heads side by side)

Keys and values are appended to a KV cache when one is given, so a decode step attends over every
earlier position while computing only its own.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.model.config import ModelConfig
from gptlab.model.embeddings import ValueEmbedding
from gptlab.model.hooks import HookPoint
from gptlab.model.kv_cache import KVCacheLike
from gptlab.model.norms import make_norm
from gptlab.model.positions import apply_rope

# Whether a decode step's single query goes through torch's fused kernel (True) or the explicit
# q @ k^T, softmax, @ v (False). On the quiet 2-core CPU the fused kernel decoded GPT-2 at 31.7
# tokens/s against 30.7 (benchmarks/profile_decode.py --compare-attention, BENCHMARKS.md); under
# heavy load its thread fan-out was the slower one, which is why the switch exists.
SINGLE_QUERY_SDPA = True


def causal_mask(
    T: int,
    past: int,
    attention_mask: torch.Tensor | None,
    device: torch.device,
    key_len: int | None = None,
) -> tuple[torch.Tensor | None, bool]:
    """The attention mask for T new queries after `past` cached positions.

    Returns (mask, is_causal). The common cases need no mask tensor: a full causal pass uses the
    fused causal kernel, and a single new token may attend to everything before it. Otherwise the
    boolean mask is (B or 1, 1, T, key_len), True where a query may attend. key_len is past + T
    unless a preallocated cache hands attention more slots; those lie after every query, so
    causality hides them. With padding, a query always keeps its own position, so a padding row
    never becomes all -inf (NaN); those rows' outputs are ignored.
    """
    T_k = past + T if key_len is None else key_len
    if attention_mask is None and T_k == past + T:
        if past == 0:
            return None, True
        if T == 1:
            return None, False
    query_pos = torch.arange(past, past + T, device=device).unsqueeze(1)  # (T, 1)
    key_pos = torch.arange(T_k, device=device).unsqueeze(0)  # (1, T_k)
    mask = (key_pos <= query_pos).unsqueeze(0).unsqueeze(0)  # (1, 1, T, T_k)
    if attention_mask is not None:
        keep = attention_mask.to(torch.bool)  # (B, past + T)
        unwritten = keep.new_ones(keep.size(0), T_k - keep.size(1))  # hidden by causality anyway
        keep = torch.cat([keep, unwritten], dim=1)[:, None, None, :]  # (B, 1, 1, T_k)
        mask = (mask & keep) | (key_pos == query_pos)
    return mask, False


class AttentionInputs(NamedTuple):
    """What every block and its attention need besides x, the same for all layers of one pass.

    mask: (B or 1, 1, T, T_k) boolean, True where a query may attend, or None when `is_causal`
    (or a lone new token) needs no tensor; see causal_mask. kv_cache: the keys and values of
    earlier positions, appended to by this pass. rope: (cos, sin) of this pass's positions when
    the model uses rotary positions. idx: this pass's token ids (B, T), for value embeddings.
    x0: the embedding output (B, T, C), for x0_blend. bigram: the bigram rows (B, T, C), for
    bigram_embed.
    """

    mask: torch.Tensor | None
    is_causal: bool
    kv_cache: KVCacheLike | None = None
    rope: tuple[torch.Tensor, torch.Tensor] | None = None
    idx: torch.Tensor | None = None
    x0: torch.Tensor | None = None
    bigram: torch.Tensor | None = None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer  # which of the KV cache's layers this attention reads and appends to
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.head_dim = config.head_dim
        self.scale = config.attention_scale
        self.sdpa_scale = config.attn_scale  # None: the fused kernel's own 1/sqrt(head_dim)
        self.dropout = config.dropout
        self.use_sdpa = config.attention == "sdpa"
        # One matmul computes queries (n_head heads), keys and values (n_kv_head heads each).
        self.kv_dim = self.n_kv_head * self.head_dim
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * self.kv_dim, bias=config.bias)
        # QK-norm: normalising each head's q and k bounds the attention logits.
        self.q_norm = make_norm(config, self.head_dim) if config.qk_norm else None
        self.k_norm = make_norm(config, self.head_dim) if config.qk_norm else None
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        # Value embeddings (every other layer): a token table added to the values, gated per head.
        self.value_embed = ValueEmbedding(config) if layer in config.value_embed_layers() else None
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.hook_q = HookPoint()  # (B, n_head, T, head_dim)
        self.hook_k = HookPoint()  # (B, n_kv_head, T, head_dim), this call's positions only
        self.hook_v = HookPoint()  # (B, n_kv_head, T, head_dim)
        self.hook_value_embed = HookPoint()  # (B, n_kv_head, T, head_dim) what v gets added
        self.hook_attn_scores = HookPoint()  # (B, n_head, T, T_k) before softmax, -inf where masked
        self.hook_pattern = HookPoint()  # (B, n_head, T, T_k) attention weights, rows sum to 1
        self.hook_z = HookPoint()  # (B, T, n_head, head_dim) each head's output before c_proj

    def forward(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split([C, self.kv_dim, self.kv_dim], dim=2)
        # (B, T, heads * head_dim) -> (B, heads, T, head_dim): every head attends independently.
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if self.value_embed is not None:
            v = v + self.hook_value_embed(self.value_embed(x, inputs.idx))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if inputs.rope is not None:  # rotate by absolute position before caching: keys are final
            q, k = apply_rope(q, *inputs.rope), apply_rope(k, *inputs.rope)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if inputs.kv_cache is not None:
            k, v = inputs.kv_cache.update(self.layer, k, v)  # (B, n_kv_head, T_past + T, head_dim)
        if self.n_kv_head != self.n_head:
            # Grouped-query attention: each group of n_head / n_kv_head query heads shares one
            # key/value head. The cache keeps the small tensors; expand them only here.
            group = self.n_head // self.n_kv_head
            k = k.repeat_interleave(group, dim=1)  # (B, n_head, T_k, head_dim)
            v = v.repeat_interleave(group, dim=1)

        dropout_p = self.dropout if self.training else 0.0
        # The fused kernel never materialises the weights; hooks on them need the explicit path.
        # A single query (a decode step) takes it too when SINGLE_QUERY_SDPA is off.
        hooked = self.hook_attn_scores.active or self.hook_pattern.active
        single_query = T == 1 and not self.training
        if self.use_sdpa and not hooked and (SINGLE_QUERY_SDPA or not single_query):
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=inputs.mask,
                dropout_p=dropout_p,
                is_causal=inputs.is_causal,
                scale=self.sdpa_scale,
            )
        else:
            y = self.attention_weights(q, k, inputs.mask, inputs.is_causal) @ v
        y = self.hook_z(y.transpose(1, 2))  # (B, T, n_head, head_dim)
        y = y.contiguous().view(B, T, C)  # re-assemble all heads side by side
        return self.resid_dropout(self.c_proj(y))

    def attention_weights(
        self, q: torch.Tensor, k: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool
    ) -> torch.Tensor:
        """softmax(q k^T * scale) with masking: (B, n_head, T_q, T_k), rows sum to 1."""
        scores = (q @ k.transpose(-2, -1)) * self.scale
        if is_causal:
            T_q, T_k = scores.shape[-2:]
            attn_mask = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril(
                diagonal=T_k - T_q
            )
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = self.hook_pattern(F.softmax(self.hook_attn_scores(scores), dim=-1))
        return self.attn_dropout(weights)
