"""The model side of decoding: next-token logits for a (possibly padded) batch, with or without
a KV cache, and the compiled decode step.

Batches: prompts of different lengths are left-padded, so every row's newest token sits in the
last column; an attention mask hides the padding and position ids restart at 0 on each row's
first real token, so a row's tokens are exactly those it would get alone.

The context window: GPT-2's positions are learned embeddings for 0..block_size-1, so a cached
key cannot be "shifted" to a new position. Once a sequence outgrows block_size, each step
recomputes the last block_size tokens at positions 0..block_size-1 without a cache: every token
past that point costs a full block_size forward pass (as uncached decoding does), never a crash.

Caches: "dynamic" grows by concatenation, "static" is preallocated to the prompt +
max_new_tokens and written in place, "none" recomputes the context every step. `compile` runs
the one-token decode step through torch.compile, which needs the static cache so the step's
shapes never change.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence

import torch

from gptlab.device import require_memory
from gptlab.errors import GptlabError
from gptlab.inference.weight_layout import has_packed_linears
from gptlab.model.kv_cache import KVCache
from gptlab.model.static_cache import StaticKVCache


def left_pad(
    prompts: Sequence[Sequence[int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prompts of any lengths -> tokens (B, T) padded on the left, and a mask (B, T) with 1 for real
    tokens. The mask is None when all prompts have the same length (no padding to hide)."""
    longest = max(len(p) for p in prompts)
    tokens = torch.zeros(len(prompts), longest, dtype=torch.long)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        tokens[row, longest - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, longest - len(prompt) :] = 1
    if bool(mask.all()):
        return tokens.to(device), None
    return tokens.to(device), mask.to(device)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids (B, T) counting real tokens only: 0 at each row's first real token."""
    return (mask.cumsum(dim=-1) - 1).clamp(min=0)


def new_cache(model, kind: str, batch: int, max_len: int) -> KVCache | StaticKVCache | None:
    """An empty cache of `kind` for `batch` rows of up to max_len positions (None for "none")."""
    if kind == "none":
        return None
    if kind == "static":
        return StaticKVCache.for_model(model, batch, min(max_len, model.config.block_size))
    return KVCache(model.config.n_layer)


def next_token_logits(
    model,
    tokens: torch.Tensor,
    mask: torch.Tensor | None,
    cache: KVCache | StaticKVCache | None,
    decode_step=None,
) -> tuple[torch.Tensor, KVCache | StaticKVCache | None]:
    """Logits (B, V) for the token after `tokens` (B, T), and the cache to use next step.

    With a cache, only the tokens it has not seen yet go through the model (the whole prompt on
    the first step, then one token, through `decode_step` when given: a compiled model). Without
    one, or once T exceeds block_size, the last block_size tokens are recomputed from scratch at
    positions 0..block_size-1; the cache is then dropped, since its keys were computed at
    positions that no longer apply.
    """
    block_size = model.config.block_size
    if cache is not None and tokens.size(1) <= block_size:
        past = cache.seq_len
        positions = None if mask is None else positions_from_mask(mask)[:, past:]
        forward = decode_step if decode_step is not None and past > 0 else model
        logits, _ = forward(
            tokens[:, past:],
            attention_mask=mask,
            position_ids=positions,
            kv_cache=cache,
            only_last=True,
        )
        return logits[:, -1, :], cache
    window = tokens[:, -block_size:]
    window_mask = None if mask is None else mask[:, -block_size:]
    positions = None if window_mask is None else positions_from_mask(window_mask)
    logits, _ = model(window, attention_mask=window_mask, position_ids=positions, only_last=True)
    return logits[:, -1, :], None


def require_cache_fits(model, batch: int, length: int, device: torch.device) -> None:
    """Refuse a batch whose keys and values (and logits, and the token buffer decode keeps for
    every new token) cannot fit, before allocating them."""
    c = model.config
    head_dim = c.n_embd // c.n_head
    kv_heads = c.n_kv_head or c.n_head
    element = next(model.parameters()).element_size()
    context = min(length, c.block_size)
    cache = 2 * c.n_layer * batch * kv_heads * context * head_dim * element
    logits = batch * c.padded_vocab_size * 4
    tokens = 2 * batch * length * 8  # the (B, prompt + new) int64 context buffer and its mask
    require_memory(
        cache + logits + tokens, f"generating {batch} sequence(s) of {length} tokens", device
    )


def compiled_decode_step(model, backend: str = "inductor"):
    """torch.compile(model), kept on the model so later calls reuse the compiled code.

    With a static cache the decode step's tensors keep one shape; only the cache's write
    position (a Python int) changes, so torch.compile specialises on the first one, recompiles
    once with it symbolic, and never again. backend="eager" traces without generating code
    (tests use it: the same graph capture, no C++ compiler needed).
    """
    if has_packed_linears(model):  # inductor fails deep inside on oneDNN's opaque matrices
        raise GptlabError(
            "this model's linears are packed for eager decoding, which torch.compile cannot "
            "trace; prepare it with prepare_model(model, compile=True)"
        )
    device = model.wte.weight.device
    if backend == "inductor" and device.type == "cpu" and not _cpp_compiler():
        warnings.warn(
            "torch.compile needs a C++ compiler on CPU and none was found (install g++ or set "
            "CXX); decoding without compile",
            stacklevel=3,
        )
        return None
    compiled = getattr(model, "_gptlab_compiled", {})
    if backend not in compiled:
        compiled[backend] = torch.compile(model, backend=backend)
        model._gptlab_compiled = compiled
    return compiled[backend]


def _cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would find, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None
