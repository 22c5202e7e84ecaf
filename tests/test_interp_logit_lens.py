"""Logit lens: the last stage is the model's output; earlier stages equal truncated models."""

import copy

import pytest
import torch
from interp_testing import random_model, random_tokens

from gptlab.interp.logit_lens import decode_residual, logit_lens, save_next_token_heatmap


def test_logit_lens_at_the_last_layer_equals_the_models_logits():
    model = random_model(
        pad_vocab_multiple=8
    )  # vocabulary padding must be cut off as the model does
    idx = random_tokens(model, 13)
    logits, cache = model.run_with_cache(idx, names=["blocks.2.hook_resid_post"])
    assert torch.equal(decode_residual(model, cache["blocks.2.hook_resid_post"]), logits)

    lens = logit_lens(model, idx, k=4)
    probs = logits[0].softmax(-1)  # (T, V)
    top = probs.topk(4, dim=-1)
    assert torch.equal(lens.top_ids[-1], top.indices)
    torch.testing.assert_close(lens.top_probs[-1], top.values)
    torch.testing.assert_close(
        lens.next_token_probs[-1], probs[:-1].gather(1, idx[0, 1:, None])[:, 0]
    )


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_logit_lens_stage_equals_a_model_cut_after_that_many_blocks(stage):
    model = random_model()
    idx = random_tokens(model, 10)
    truncated = copy.deepcopy(model)
    truncated.blocks = truncated.blocks[
        :stage
    ]  # embeddings, `stage` blocks, then ln_f and the head
    with torch.no_grad():
        expected = truncated(idx)[0][0].softmax(-1)  # (T, V)
    lens = logit_lens(model, idx, k=3)
    assert lens.stages[stage] == ("embed" if stage == 0 else f"block {stage - 1}")
    torch.testing.assert_close(
        lens.top_probs[stage], expected.topk(3, dim=-1).values, atol=1e-6, rtol=1e-5
    )
    torch.testing.assert_close(
        lens.next_token_probs[stage],
        expected[:-1].gather(1, idx[0, 1:, None])[:, 0],
        atol=1e-6,
        rtol=1e-5,
    )


def test_next_token_heatmap_png(tmp_path):
    model = random_model()
    lens = logit_lens(model, random_tokens(model, 6))
    path = save_next_token_heatmap(tmp_path / "lens.png", lens, list("abcdef"))
    assert lens.next_token_probs.shape == (4, 5)
    assert path.read_bytes()[:4] == b"\x89PNG"
