"""The GPT model, its KV cache and Hugging Face interop."""

from gptlab.model.gpt import GPT
from gptlab.model.kv_cache import KVCache, KVCacheLike
from gptlab.model.static_cache import StaticKVCache

__all__ = ["GPT", "KVCache", "KVCacheLike", "StaticKVCache"]
