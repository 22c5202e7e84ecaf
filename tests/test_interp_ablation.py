"""Head ablation, checked against weight surgery (an independent way to remove a head)."""

import copy

import pytest
import torch
from interp_testing import random_model, random_tokens

from gptlab.errors import GptlabError
from gptlab.interp.ablation import (
    ablation_hooks,
    head_ablation,
    prompt_batches,
    save_ablation_heatmap,
)


@pytest.mark.parametrize("layer", [0, 2])
def test_zero_ablating_every_head_of_a_layer_leaves_only_the_c_proj_bias(layer):
    """Zeroing all heads' outputs (hook_z) makes the attention output c_proj(0) = c_proj.bias.

    So it equals replacing that layer's attention output (hook_attn_out) with the bias broadcast
    over batch and positions, not with zeros: the bias belongs to no head, and head ablation
    leaves it in place (with bias=False the two notions coincide).
    """
    model = random_model()
    idx = random_tokens(model, 10, batch=2)
    all_heads = {layer: range(model.config.n_head)}
    with model.hooks(ablation_hooks(all_heads, "zero")):
        ablated, _ = model(idx)
    bias = model.blocks[layer].attn.c_proj.bias
    with model.hooks({f"blocks.{layer}.hook_attn_out": lambda x, name: bias.expand_as(x)}):
        bias_only, _ = model(idx)
    torch.testing.assert_close(ablated, bias_only, atol=1e-6, rtol=0)
    plain, _ = model(idx)
    assert not torch.allclose(ablated, plain, atol=1e-3)


def test_zero_ablating_every_head_without_biases_removes_the_attention_output():
    model = random_model(bias=False)
    idx = random_tokens(model, 10)
    with model.hooks(ablation_hooks({1: range(model.config.n_head)}, "zero")):
        ablated, _ = model(idx)
    with model.hooks({"blocks.1.hook_attn_out": lambda x, name: torch.zeros_like(x)}):
        removed, _ = model(idx)
    torch.testing.assert_close(ablated, removed, atol=1e-6, rtol=0)


def without_head(model, layer: int, head: int, mean_z: torch.Tensor | None = None):
    """A copy of the model whose c_proj ignores one head's slice; for mean-ablation the constant
    output of that head (W_O slice @ mean z) moves into c_proj's bias instead."""
    D = model.config.head_dim
    surgery = copy.deepcopy(model)
    c_proj = surgery.blocks[layer].attn.c_proj
    columns = slice(head * D, (head + 1) * D)
    if mean_z is not None:
        c_proj.bias += c_proj.weight[:, columns] @ mean_z
    c_proj.weight[:, columns] = 0.0
    return surgery


def loss(model, idx) -> float:
    return float(model(idx[:, :-1], idx[:, 1:])[1])


def test_zero_ablation_matches_removing_the_heads_weights():
    model = random_model()
    idx = random_tokens(model, 16)
    result = head_ablation(model, prompt_batches(idx), mode="zero", progress=False)
    assert result.clean_loss == pytest.approx(loss(model, idx), abs=1e-5)
    assert result.n_tokens == 15
    for layer, head in [(0, 0), (1, 3), (2, 2)]:
        expected = loss(without_head(model, layer, head), idx)
        assert float(result.ablated_loss[layer, head]) == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(result.loss_increase, result.ablated_loss - result.clean_loss)


def test_mean_ablation_over_several_batches_matches_weight_surgery():
    model = random_model()
    batches = [
        (x[:, :-1], x[:, 1:]) for x in (random_tokens(model, 9, seed=s, batch=3) for s in (1, 2))
    ]
    result = head_ablation(model, batches, mode="mean", progress=False)
    all_inputs = torch.cat(
        [x for x, _ in batches]
    )  # (6, 8): the mean is over every token of the data
    layer, head = 1, 2
    _, cache = model.run_with_cache(all_inputs, names=[f"blocks.{layer}.attn.hook_z"])
    mean_z = cache[f"blocks.{layer}.attn.hook_z"][:, :, head].mean(dim=(0, 1))  # (D,)
    surgery = without_head(model, layer, head, mean_z)
    expected = sum(float(surgery(x, y)[1]) * y.numel() for x, y in batches) / sum(
        y.numel() for _, y in batches
    )
    assert float(result.ablated_loss[layer, head]) == pytest.approx(expected, abs=1e-5)


def test_bad_mode_is_a_user_error():
    with pytest.raises(GptlabError, match="unknown ablation mode 'half'"):
        ablation_hooks({0: [0]}, "half")


def test_ablation_heatmap_png(tmp_path):
    model = random_model()
    result = head_ablation(model, prompt_batches(random_tokens(model, 6)), progress=False)
    assert save_ablation_heatmap(tmp_path / "heads.png", result).read_bytes()[:4] == b"\x89PNG"


def test_mlp_ablation_zero_leaves_the_residual_stream_as_the_attention_left_it():
    from gptlab.interp.ablation import mlp_ablation_hooks

    model = random_model()
    idx = random_tokens(model, 9)
    names = ["blocks.1.hook_resid_mid", "blocks.1.hook_resid_post", "blocks.1.hook_mlp_out"]
    with torch.no_grad(), model.hooks(mlp_ablation_hooks([1], "zero")):
        _, cache = model.run_with_cache(idx, names=names)
    assert torch.equal(cache["blocks.1.hook_resid_post"], cache["blocks.1.hook_resid_mid"])
    # mean: the MLP writes the same vector at every position, whatever the input.
    means = torch.randn(model.config.n_layer, model.config.n_embd)
    with torch.no_grad(), model.hooks(mlp_ablation_hooks([1], "mean", means)):
        _, cache = model.run_with_cache(idx, names=names)
    post, mid = cache["blocks.1.hook_resid_post"], cache["blocks.1.hook_resid_mid"]
    assert torch.allclose(post - mid, means[1].expand_as(post), atol=1e-6)
    with pytest.raises(GptlabError, match="unknown ablation mode"):
        mlp_ablation_hooks([0], "half")


def test_padded_targets_count_for_neither_the_loss_nor_the_mean_output():
    """Right padding (targets = -100) must not change anything: the result equals that of the
    same sequences cropped to their real tokens, and the clean loss is the mean over counted
    positions (the padded mean used to divide by every position)."""
    import torch.nn.functional as F

    from gptlab.model.batching import IGNORE_INDEX

    model = random_model()
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 61, (1, 12), generator=g)
    y = torch.randint(0, 61, (1, 12), generator=g)
    padded_y = y.clone()
    padded_y[:, 7:] = IGNORE_INDEX  # 7 real targets, 5 padded
    padded_x = x.clone()
    padded_x[:, 7:] = (
        0  # padding tokens come after the real ones (causal: they change nothing before)
    )
    for mode in ("zero", "mean"):
        padded = head_ablation(model, [(padded_x, padded_y)], mode=mode, progress=False)
        cropped = head_ablation(model, [(x[:, :7], y[:, :7])], mode=mode, progress=False)
        assert padded.n_tokens == 7
        assert padded.clean_loss == pytest.approx(cropped.clean_loss, abs=1e-6)
        assert torch.allclose(padded.ablated_loss, cropped.ablated_loss, atol=1e-5)
    logits, _ = model(x[:, :7])
    by_hand = sum(float(F.cross_entropy(logits[0, t][None], y[0, t][None])) for t in range(7)) / 7
    assert padded.clean_loss == pytest.approx(by_hand, abs=1e-5)
