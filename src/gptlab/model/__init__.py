"""The GPT model, its KV cache and Hugging Face interop."""

from gptlab.model.gpt import GPT
from gptlab.model.kv_cache import KVCache

__all__ = ["GPT", "KVCache"]
