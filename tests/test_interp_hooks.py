"""Hook points and run_with_cache: neutral when they return their input, equal to HF's outputs."""

import pytest
import torch
from interp_testing import random_model, random_tokens

from gptlab.errors import GptlabError
from gptlab.model import KVCache

PATTERN_HOOKS = ("hook_attn_scores", "hook_pattern")


def identity(x, name):
    return x


def test_hooks_returning_their_input_change_nothing():
    model = random_model()
    idx = random_tokens(model, 20, batch=2)
    expected, _ = model(idx)
    # Every hook point except the two that switch attention to the explicit path: bit-identical.
    fused_path = [n for n in model.hook_points if not n.endswith(PATTERN_HOOKS)]
    with model.hooks({name: identity for name in fused_path}):
        logits, _ = model(idx)
    assert torch.equal(logits, expected)
    # All of them: the explicit attention path agrees with the fused kernel within fp32 rounding.
    with model.hooks({"*": identity}):
        logits, _ = model(idx)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_hooks_returning_their_input_change_nothing_with_explicit_attention():
    model = random_model(attention="explicit")
    idx = random_tokens(model, 20)
    expected, _ = model(idx)
    with model.hooks({"*": identity}):
        logits, _ = model(idx)
    assert torch.equal(logits, expected)


def test_hooks_returning_their_input_change_nothing_when_decoding_with_kv_cache():
    model = random_model()
    idx = random_tokens(model, 12)
    cache = KVCache(model.config.n_layer)
    model(idx[:, :-1], kv_cache=cache)
    expected, _ = model(idx[:, -1:], kv_cache=cache)
    cache = KVCache(model.config.n_layer)
    with model.hooks({"*": identity}):
        model(idx[:, :-1], kv_cache=cache)
        logits, _ = model(idx[:, -1:], kv_cache=cache)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_hooks_are_detached_after_the_with_block():
    model = random_model()
    idx = random_tokens(model, 8)
    expected, _ = model(idx)
    with model.hooks({"blocks.*.hook_resid_post": lambda x, name: torch.zeros_like(x)}):
        changed, _ = model(idx)
    after, _ = model(idx)
    assert not torch.allclose(changed, expected)
    assert torch.equal(after, expected)
    assert not any(point.active for point in model.hook_points.values())


def test_run_with_cache_holds_the_documented_shapes():
    model = random_model()
    B, T = 2, 9
    C, H, D, V = (
        model.config.n_embd,
        model.config.n_head,
        model.config.head_dim,
        model.config.vocab_size,
    )
    logits, cache = model.run_with_cache(random_tokens(model, T, batch=B))
    assert cache["hook_embed"].shape == (B, T, C)
    assert cache["blocks.1.attn.hook_q"].shape == (B, H, T, D)
    assert cache["blocks.1.attn.hook_pattern"].shape == (B, H, T, T)
    assert cache["blocks.1.attn.hook_z"].shape == (B, T, H, D)
    assert cache["blocks.1.mlp.hook_post"].shape == (B, T, 4 * C)
    assert torch.equal(cache["hook_logits"], logits)
    assert logits.shape == (B, T, V)


def test_unknown_hook_name_is_a_user_error():
    model = random_model()
    with pytest.raises(GptlabError, match="blocks.0.hook_resid"):
        model.run_with_cache(random_tokens(model, 4), names=["blocks.0.hook_resid"])


def test_cache_matches_hugging_face_hidden_states_and_attentions():
    transformers = pytest.importorskip("transformers")
    from gptlab.model.hf import from_hf_model

    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        vocab_size=101,
        n_positions=32,
        n_embd=48,
        n_layer=3,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    hf_config._attn_implementation = "eager"  # only the eager path returns attention weights
    hf_model = transformers.GPT2LMHeadModel(hf_config).eval()
    model = from_hf_model(hf_model).eval()
    idx = torch.randint(0, 101, (2, 17), generator=torch.Generator().manual_seed(2))

    with torch.no_grad():
        hf_out = hf_model(idx, output_hidden_states=True, output_attentions=True)
        logits, cache = model.run_with_cache(idx)
    n_layer = model.config.n_layer
    # HF's hidden_states: the input of each block, then the final LayerNorm's output.
    assert len(hf_out.hidden_states) == n_layer + 1
    for i in range(n_layer):
        torch.testing.assert_close(
            cache[f"blocks.{i}.hook_resid_pre"], hf_out.hidden_states[i], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            cache[f"blocks.{i}.attn.hook_pattern"], hf_out.attentions[i], atol=1e-5, rtol=0
        )
    torch.testing.assert_close(
        cache["hook_ln_final"], hf_out.hidden_states[n_layer], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(logits, hf_out.logits, atol=1e-4, rtol=0)
