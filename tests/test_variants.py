"""Architecture variants: each switch decodes the same with and without a KV cache, trains, and
matches an independent reference (hand computations, the plain multi-head path, rotation math).
"""

from __future__ import annotations

import pytest
import torch
from model_testing import spiky_model

from gptlab.checkpoints.load import load_model
from gptlab.checkpoints.model_folder import save_model
from gptlab.errors import GptlabError
from gptlab.inference.generate import GenerationConfig, generate
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.model.hf import export_hf, hf_config_from_model_config
from gptlab.model.norms import RMSNorm
from gptlab.model.positions import apply_rope, rope_angles

TINY = dict(vocab_size=40, block_size=24, n_layer=2, n_head=4, n_embd=32)

VARIANTS = {
    "pos=rope": dict(pos="rope"),
    "pos=none": dict(pos="none"),
    "rope_truncated": dict(pos="rope", rope_truncated=True),
    "norm=rmsnorm": dict(norm="rmsnorm"),
    "norm_placement=post": dict(norm_placement="post"),
    "mlp=swiglu": dict(mlp="swiglu"),
    "mlp=relu2": dict(mlp="relu2"),
    "n_kv_head=2": dict(n_kv_head=2),
    "n_kv_head=1": dict(n_kv_head=1),
    "qk_norm": dict(qk_norm=True),
    "attn_scale=0.7": dict(attn_scale=0.7),
    "bias=false": dict(bias=False),
    "tie_weights=false": dict(tie_weights=False),
    "logit_softcap=5": dict(logit_softcap=5.0),
    "bigram_embed": dict(bigram_embed=True),
    "value_embed": dict(value_embed=True),
    "x0_blend": dict(x0_blend=True),
    "smear": dict(smear=True),
    "all": dict(
        pos="rope",
        rope_truncated=True,
        norm="rmsnorm",
        norm_placement="post",
        mlp="swiglu",
        n_kv_head=2,
        qk_norm=True,
        attn_scale=0.7,
        bias=False,
        tie_weights=False,
        logit_softcap=8.0,
        bigram_embed=True,
        value_embed=True,
        x0_blend=True,
        smear=True,
    ),
}


def variant_config(changes: dict) -> ModelConfig:
    return ModelConfig(**TINY, **changes)


@pytest.mark.parametrize("changes", VARIANTS.values(), ids=VARIANTS.keys())
def test_cached_decode_equals_uncached(changes):
    model = spiky_model(variant_config(changes), seed=1)  # a seed where every variant wanders
    prompts = [[1, 2, 3], [7, 8, 9, 10, 11, 12]]  # different lengths: left padding in the batch
    # 30 new tokens run past block_size (24), so the context is cropped along the way too.
    greedy = dict(max_new_tokens=30, temperature=0.0, stop_at_eot=False)
    cached = generate(model, prompts, GenerationConfig(**greedy, cache="dynamic"))
    uncached = generate(model, prompts, GenerationConfig(**greedy, cache="none"))
    static = generate(model, prompts, GenerationConfig(**greedy, cache="static"))
    for c, u, s in zip(cached, uncached, static, strict=True):
        assert c.token_ids == u.token_ids == s.token_ids
        assert len(set(c.token_ids)) > 3  # a real sequence, not one token repeated


@pytest.mark.parametrize("changes", VARIANTS.values(), ids=VARIANTS.keys())
def test_training_step_lowers_loss(changes):
    torch.manual_seed(0)
    model = GPT(variant_config(changes))
    idx = torch.randint(0, 40, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())  # every parameter learns
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    q = torch.randn(1, 2, 5, 8)
    k = torch.randn(1, 2, 5, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4]])

    def scores(shift: int) -> torch.Tensor:
        cos, sin = rope_angles(positions + shift, head_dim=8)
        return apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-2, -1)

    torch.testing.assert_close(scores(0), scores(37), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores(0), q @ k.transpose(-2, -1), atol=1e-3)  # it did rotate


def test_rope_is_a_rotation_of_each_feature_pair():
    # Hand computation for head_dim 4: pairs (x0, x2) and (x1, x3) turn by pos * base^(-i/2).
    x = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])  # (1, 1, 1, 4)
    pos = 3
    cos, sin = rope_angles(torch.tensor([[pos]]), head_dim=4)
    out = apply_rope(x, cos, sin).flatten()
    angles = torch.tensor([pos * 1.0, pos * 10000.0**-0.5])
    expected = torch.tensor(
        [
            1.0 * angles[0].cos() - 3.0 * angles[0].sin(),
            2.0 * angles[1].cos() - 4.0 * angles[1].sin(),
            1.0 * angles[0].sin() + 3.0 * angles[0].cos(),
            2.0 * angles[1].sin() + 4.0 * angles[1].cos(),
        ]
    )
    torch.testing.assert_close(out, expected)


def test_truncated_rope_turns_half_the_pairs_over_the_same_frequency_range():
    # Hand computation for head_dim 8: 4 pairs, of which 2 turn, at base^0 and base^(-1/2);
    # the other two stay put at every position.
    pos = torch.tensor([[0, 1, 5]])
    cos, sin = rope_angles(pos, head_dim=8, truncated=True)
    angles = pos[0, :, None].float() * torch.tensor([1.0, 10000.0**-0.5, 0.0, 0.0])
    torch.testing.assert_close(cos[0, 0], angles.cos())
    torch.testing.assert_close(sin[0, 0], angles.sin())
    full_cos, _ = rope_angles(pos, head_dim=8)
    assert not torch.allclose(full_cos[0, 0, :, 2:], torch.ones(3, 2))  # untruncated: all turn


def test_rmsnorm_matches_hand_computation():
    norm = RMSNorm(4, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
    x = torch.tensor([[3.0, -1.0, 2.0, 0.0]])
    rms = ((9 + 1 + 4 + 0) / 4 + 1e-5) ** 0.5
    expected = torch.tensor([[3.0 / rms, -2.0 / rms, 1.0 / rms, 0.0]])
    torch.testing.assert_close(norm(x), expected)


def test_logit_softcap_bounds_logits():
    model = spiky_model(variant_config(dict(logit_softcap=2.0)))
    uncapped = spiky_model(variant_config({}))
    idx = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        logits, _ = model(idx)
        raw, _ = uncapped(idx)  # same seed, same weights
    assert raw.abs().max() > 2.0  # the cap has something to do
    assert logits.abs().max() < 2.0
    torch.testing.assert_close(logits, 2.0 * torch.tanh(raw / 2.0))


def test_attn_scale_equals_queries_scaled_by_hand():
    """softmax(q.k * s) is softmax((s * sqrt(head_dim) * q).k / sqrt(head_dim)): a model with
    attn_scale = s equals a GPT-2 model whose query weights and biases are multiplied by
    s * sqrt(head_dim), on the fused kernel and on the explicit path (which hooks take)."""
    scale, head_dim, C = 0.7, 8, 32
    scaled = spiky_model(variant_config(dict(attn_scale=scale)))
    plain = GPT(variant_config({})).eval()
    state = scaled.state_dict()
    for i in range(2):
        for name in ("weight", "bias"):
            tensor = state[f"blocks.{i}.attn.c_attn.{name}"].clone()
            tensor[:C] *= scale * head_dim**0.5  # the query rows
            state[f"blocks.{i}.attn.c_attn.{name}"] = tensor
    plain.load_state_dict(state)
    idx = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        expected = plain(idx)[0]
        torch.testing.assert_close(scaled(idx)[0], expected, atol=1e-5, rtol=1e-5)
        hooked, _ = scaled.run_with_cache(idx)  # hooks on the pattern: the explicit path
        torch.testing.assert_close(hooked, expected, atol=1e-5, rtol=1e-5)
        default = spiky_model(variant_config({}))
        assert not torch.allclose(default(idx)[0], expected, atol=1e-3)  # the scale mattered


def test_gqa_matches_plain_attention_with_repeated_kv_heads():
    """A 2-kv-head model equals a 4-head model whose k, v weights repeat each kv head twice."""
    gqa = spiky_model(variant_config(dict(n_kv_head=2)))
    full = GPT(variant_config({})).eval()
    C, D = 32, 8
    state = gqa.state_dict()
    for i in range(2):
        w = state[f"blocks.{i}.attn.c_attn.weight"]  # (C + 2 * 2D, C)
        b = state[f"blocks.{i}.attn.c_attn.bias"]
        q_w, k_w, v_w = w.split([C, 2 * D, 2 * D])
        q_b, k_b, v_b = b.split([C, 2 * D, 2 * D])

        def repeat(t):  # kv head h serves query heads 2h and 2h + 1
            return t.unflatten(0, (2, D)).repeat_interleave(2, dim=0).flatten(0, 1)

        state[f"blocks.{i}.attn.c_attn.weight"] = torch.cat([q_w, repeat(k_w), repeat(v_w)])
        state[f"blocks.{i}.attn.c_attn.bias"] = torch.cat([q_b, repeat(k_b), repeat(v_b)])
    full.load_state_dict(state)
    idx = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx)[0], full(idx)[0], atol=1e-5, rtol=1e-5)


def test_gqa_with_n_kv_head_equal_n_head_is_gpt2():
    torch.manual_seed(0)
    explicit = GPT(variant_config(dict(n_kv_head=4)))
    torch.manual_seed(0)
    default = GPT(variant_config({}))
    assert explicit.state_dict().keys() == default.state_dict().keys()
    idx = torch.randint(0, 40, (2, 10))
    torch.testing.assert_close(explicit(idx)[0], default(idx)[0])


def test_gqa_hooks_and_cache_hold_n_kv_head_heads():
    model = spiky_model(variant_config(dict(n_kv_head=2)))
    _, cache = model.run_with_cache(torch.randint(0, 40, (1, 6)))
    assert cache["blocks.0.attn.hook_q"].shape == (1, 4, 6, 8)
    assert cache["blocks.0.attn.hook_k"].shape == (1, 2, 6, 8)
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, 4, 6, 6)


def test_variant_models_have_no_unused_modules():
    rope = GPT(variant_config(dict(pos="rope")))
    assert rope.wpe is None and not any(k.startswith("wpe") for k in rope.state_dict())
    untied = GPT(variant_config(dict(tie_weights=False)))
    assert untied.lm_head.weight is not untied.wte.weight
    tied = GPT(variant_config({}))
    assert tied.lm_head.weight is tied.wte.weight


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(pos="alibi"), "model.pos must be one of learned, rope, none"),
        (dict(norm="batchnorm"), "model.norm must be one of layernorm, rmsnorm"),
        (dict(norm_placement="sandwich"), "model.norm_placement must be one of pre, post"),
        (dict(mlp="geglu"), "model.mlp must be one of gelu, swiglu, relu2"),
        (
            dict(n_kv_head=3),
            r"model.n_kv_head \(3\) must divide model.n_head \(4\); valid values: 1, 2, 4",
        ),
        (dict(n_kv_head=0), "model.n_kv_head must be a positive integer"),
        (dict(qk_norm="yes"), "model.qk_norm must be true or false"),
        (dict(tie_weights=1), "model.tie_weights must be true or false"),
        (dict(logit_softcap=-1.0), "model.logit_softcap must be null or a number > 0"),
        (
            dict(attn_scale=0.0),
            r"model.attn_scale must be null \(1/sqrt\(head_dim\)\) or a number > 0",
        ),
        (dict(pos="rope", n_embd=36, n_head=4), "rope needs an even head_dim"),
        (
            dict(rope_truncated=True),
            "model.rope_truncated changes rotary positions, but model.pos = learned",
        ),
    ],
)
def test_invalid_variants_are_refused(changes, message):
    with pytest.raises(GptlabError, match=message):
        ModelConfig(**{**TINY, **changes})


def test_hf_export_refuses_non_gpt2_configs(tmp_path):
    with pytest.raises(GptlabError, match=r"not a GPT-2 \(pos='rope', mlp='swiglu'\)"):
        hf_config_from_model_config(variant_config(dict(pos="rope", mlp="swiglu")))
    with pytest.raises(GptlabError, match=r"n_kv_head=2"):
        export_hf(GPT(variant_config(dict(n_kv_head=2))), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()  # refused before anything was written
    hf_config_from_model_config(variant_config(dict(n_kv_head=4)))  # n_kv_head = n_head is GPT-2


def test_untied_model_round_trips_through_a_checkpoint(tmp_path):
    model = GPT(variant_config(dict(tie_weights=False, mlp="swiglu")))
    save_model(tmp_path / "model", model)
    loaded, _ = load_model(tmp_path / "model", "cpu")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)


def test_parameter_accounting_counts_an_untied_head_once():
    from gptlab.model.params import count_parameters

    tied = variant_config(dict(mlp="swiglu"))
    untied = variant_config(dict(mlp="swiglu", tie_weights=False))
    head = tied.padded_vocab_size * tied.n_embd
    tied_model, untied_model = GPT(tied), GPT(untied)
    assert untied_model.num_parameters() == tied_model.num_parameters() + head
    counts = count_parameters(untied)
    assert counts.total_without_tying == untied_model.num_parameters()
    assert not counts.tied


def test_logit_attribution_works_with_rope_and_refuses_what_it_cannot_split():
    from gptlab.interp.attribution import direct_logit_attribution

    idx = torch.randint(0, 50, (1, 8))
    torch.manual_seed(0)
    result = direct_logit_attribution(GPT(variant_config(dict(pos="rope"))).eval(), idx)
    assert result.pos_embed == 0.0
    assert result.total() == pytest.approx(result.logit, abs=1e-4)
    for change in (dict(norm="rmsnorm"), dict(norm_placement="post"), dict(logit_softcap=30.0)):
        with pytest.raises(GptlabError, match="direct logit attribution"):
            direct_logit_attribution(GPT(variant_config(change)).eval(), idx)
