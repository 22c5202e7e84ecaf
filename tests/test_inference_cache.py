"""Static KV cache and the compiled decode step: token for token the same as the dynamic cache and
as recomputing the whole context (the reference)."""

import shutil

import pytest
import torch
from model_testing import spiky_model

from gptlab.errors import GptlabError
from gptlab.inference.config import CACHE_KINDS, GenerationConfig
from gptlab.inference.forward import compiled_decode_step, new_cache, next_token_logits
from gptlab.inference.generate import generate
from gptlab.model import GPT, KVCache
from gptlab.model.config import ModelConfig
from gptlab.model.static_cache import StaticKVCache


@pytest.fixture(scope="module")
def model() -> GPT:
    return spiky_model(ModelConfig(vocab_size=50, block_size=24, n_layer=2, n_head=4, n_embd=32))


def greedy(n: int, **kwargs) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=n, temperature=0, stop_at_eot=False, **kwargs)


def test_static_equals_dynamic_equals_uncached_token_for_token(model):
    # Short prompts, one that outgrows block_size while decoding, one longer than block_size.
    for prompt in ([1, 2, 3], [7] * 12, list(range(30, 50)), list(range(30))):
        outputs = {kind: generate(model, prompt, greedy(20, cache=kind))[0] for kind in CACHE_KINDS}
        assert outputs["static"].token_ids == outputs["dynamic"].token_ids
        assert outputs["dynamic"].token_ids == outputs["none"].token_ids
        assert len(set(outputs["none"].token_ids)) > 3  # a real sequence, not one token repeated


def test_static_cache_with_left_padded_batch_matches_each_prompt_alone(model):
    prompts = [[1, 2, 3], [5] * 9, [7], list(range(10, 20))]
    batched = generate(model, prompts, greedy(12, cache="static"))
    for prompt, generation in zip(prompts, batched, strict=True):
        alone = generate(model, prompt, greedy(12, cache="none"))[0]
        assert generation.token_ids == alone.token_ids


def test_static_cache_holds_what_the_dynamic_cache_holds(model):
    idx = torch.randint(50, (2, 7), generator=torch.Generator().manual_seed(1))
    dynamic = KVCache(model.config.n_layer)
    static = StaticKVCache.for_model(model, batch=2, max_len=12)
    with torch.no_grad():
        for cache in (dynamic, static):
            model(idx[:, :4], kv_cache=cache)
            model(idx[:, 4:5], kv_cache=cache)
            model(idx[:, 5:], kv_cache=cache)
    assert static.seq_len == dynamic.seq_len == 7
    assert static.keys[0].shape == (2, 4, 12, 8)  # preallocated, never reallocated
    for layer in range(model.config.n_layer):
        torch.testing.assert_close(static.keys[layer][:, :, :7], dynamic.keys[layer][:, :, :7])
        torch.testing.assert_close(static.values[layer][:, :, :7], dynamic.values[layer][:, :, :7])
    static.crop(5)
    dynamic.crop(5)
    assert static.seq_len == dynamic.seq_len == 5
    with pytest.raises(ValueError, match="max_len"):
        static.key_len(8)


def test_compiled_decode_step_matches_and_does_not_recompile_per_length(model):
    """torch.compile with the "eager" backend: dynamo captures the same graphs as with inductor,
    without a C++ compiler; the count of captured graphs must not grow with the length."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    step = compiled_decode_step(model, backend="eager")
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    tokens, cache = prompt, new_cache(model, "static", 1, 24)
    with torch.inference_mode():
        for _ in range(15):
            logits, cache = next_token_logits(model, tokens, None, cache, step)
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    reference = generate(model, [3, 1, 4, 1, 5], greedy(15, cache="none"))[0].token_ids
    assert tokens[0, 5:].tolist() == reference
    # One graph specialised on the first length, one with the length symbolic; never more.
    assert counters["stats"]["unique_graphs"] <= 2


def test_compile_needs_the_static_cache():
    with pytest.raises(GptlabError, match="static"):
        GenerationConfig(compile=True)
    with pytest.raises(GptlabError, match="cache must be one of"):
        GenerationConfig(cache="paged")


def test_compile_without_a_compiler_warns_and_decodes_eagerly(model, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.warns(UserWarning, match="C\\+\\+ compiler .* decoding without compile"):
        out = generate(model, [1, 2, 3], greedy(10, cache="static", compile=True))[0]
    assert out.token_ids == generate(model, [1, 2, 3], greedy(10))[0].token_ids
