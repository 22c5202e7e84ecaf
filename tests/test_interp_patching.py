"""Activation patching: refused when clean = corrupted, exact where the inputs differ, and the
batched sweeps equal one-patch-at-a-time runs."""

import pytest
import torch
from interp_testing import random_model, random_tokens

from gptlab.errors import GptlabError
from gptlab.interp.patching import (
    PatchingResult,
    activation_patching,
    answer_probability,
    check_same_length,
    logit_difference,
    save_patching_heatmaps,
)


def test_patching_clean_into_clean_is_refused_before_the_sweep():
    """Equal runs leave nothing to restore: every restored fraction would be 0 / 0 (or rounding
    noise over rounding noise, reading 1.0000), so the sweep is refused up front."""
    model = random_model()
    clean = random_tokens(model, 8)
    with pytest.raises(GptlabError, match="score the same"):
        activation_patching(model, clean, clean, logit_difference(3, 4), progress=False)
    same = PatchingResult(1.5, 1.5, torch.full((2, 8), 1.5), torch.full((2, 4), 1.5))
    assert torch.isnan(same.normalise(same.resid)).all()  # what a caller building one still gets


def corrupt_one_token(model, clean: torch.Tensor, position: int) -> torch.Tensor:
    corrupted = clean.clone()
    corrupted[0, position] = (clean[0, position] + 1) % model.config.vocab_size
    return corrupted


def test_patching_the_changed_token_at_layer_0_restores_everything():
    """Entering layer 0 the residual stream is just the embeddings, so patching the one position
    whose token differs makes the corrupted run the clean run (score 1); other positions hold the
    same embeddings in both runs (score 0)."""
    model = random_model()
    clean = random_tokens(model, 9)
    corrupted = corrupt_one_token(model, clean, 4)
    result = activation_patching(model, clean, corrupted, answer_probability(11), progress=False)
    score = result.normalise(result.resid)
    expected = torch.zeros(9)
    expected[4] = 1.0
    torch.testing.assert_close(score[0], expected, atol=1e-4, rtol=0)
    # Before the changed token nothing differs at any layer (causal attention): score 0.
    torch.testing.assert_close(score[:, :4], torch.zeros(3, 4), atol=1e-4, rtol=0)


def test_batched_sweeps_equal_single_patches():
    model = random_model()
    clean = random_tokens(model, 7)
    corrupted = corrupt_one_token(model, clean, 2)
    metric = logit_difference(5, 6)
    result = activation_patching(model, clean, corrupted, metric, progress=False)
    _, cache = model.run_with_cache(
        clean, names=["blocks.*.hook_resid_pre", "blocks.*.attn.hook_z"]
    )

    layer, position = 1, 5
    clean_resid = cache[f"blocks.{layer}.hook_resid_pre"]

    def patch_resid(x, name):
        x = x.clone()
        x[:, position] = clean_resid[:, position]
        return x

    with model.hooks({f"blocks.{layer}.hook_resid_pre": patch_resid}):
        expected = float(metric(model(corrupted)[0])[0])
    assert float(result.resid[layer, position]) == pytest.approx(expected, abs=1e-5)

    layer, head = 2, 1
    clean_z = cache[f"blocks.{layer}.attn.hook_z"]

    def patch_head(z, name):
        z = z.clone()
        z[:, :, head] = clean_z[:, :, head]
        return z

    with model.hooks({f"blocks.{layer}.attn.hook_z": patch_head}):
        expected = float(metric(model(corrupted)[0])[0])
    assert float(result.heads[layer, head]) == pytest.approx(expected, abs=1e-5)


def test_patches_split_over_several_batches_give_the_same_scores():
    model = random_model()
    clean = random_tokens(model, 8)
    corrupted = corrupt_one_token(model, clean, 3)
    metric = logit_difference(5, 6)
    together = activation_patching(model, clean, corrupted, metric, progress=False)
    in_threes = activation_patching(
        model, clean, corrupted, metric, progress=False, rows_per_batch=3
    )
    torch.testing.assert_close(in_threes.resid, together.resid, atol=1e-5, rtol=0)
    torch.testing.assert_close(in_threes.heads, together.heads, atol=1e-5, rtol=0)


def test_metrics_read_the_last_position():
    logits = torch.randn(2, 3, 10)
    torch.testing.assert_close(logit_difference(1, 2)(logits), logits[:, -1, 1] - logits[:, -1, 2])
    torch.testing.assert_close(answer_probability(4)(logits), logits[:, -1].softmax(-1)[:, 4])


def test_prompts_of_different_lengths_are_a_user_error_showing_both_tokenizations():
    with pytest.raises(
        GptlabError,
        match=r"clean is 2 tokens \['a', 'b'\] and corrupted is 3 tokens \['a', 'b', 'c'\]",
    ):
        check_same_length([1, 2], [1, 2, 3], ["a", "b"], ["a", "b", "c"])
    model = random_model()
    with pytest.raises(GptlabError, match="same number of tokens"):
        activation_patching(
            model, random_tokens(model, 4), random_tokens(model, 5), answer_probability(0)
        )


def test_patching_heatmaps(tmp_path):
    model = random_model()
    clean = random_tokens(model, 5)
    result = activation_patching(
        model, clean, corrupt_one_token(model, clean, 1), answer_probability(0), progress=False
    )
    paths = save_patching_heatmaps(tmp_path, result, list("abcde"), "p(x)")
    assert [p.name for p in paths] == ["patch_resid.png", "patch_heads.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
