"""Head detectors, per-position loss and repeated-token loss, against hand computations."""

import json

import pytest
import torch
import torch.nn.functional as F
from interp_testing import random_model

from gptlab.errors import GptlabError
from gptlab.interp import detectors, induction


def test_target_patterns_by_hand():
    tokens = torch.tensor([5, 7, 5, 7])
    assert detectors.previous_token_target(tokens).tolist() == [
        [0, 0, 0, 0],
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
    ]
    # query 2 (token 5) duplicates key 0, query 3 (token 7) duplicates key 1
    assert detectors.duplicate_token_target(tokens).tolist() == [
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
        [0, 1, 0, 0],
    ]
    # query 2 (token 5): the token after the earlier 5 is key 1; query 3 (7): key 2
    assert detectors.induction_target(tokens).tolist() == [
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
    ]


def forced_patterns(model, pattern_for_layer):
    """Hooks replacing each layer's attention weights by pattern_for_layer(layer, T)."""

    def make(layer):
        def replace(weights, name):
            T = weights.shape[-1]
            return pattern_for_layer(layer, T).expand_as(weights).clone()

        return replace

    return {f"blocks.{i}.attn.hook_pattern": make(i) for i in range(model.config.n_layer)}


def uniform(layer, T):
    return torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]


def test_scores_match_hand_computation_for_known_patterns():
    model = random_model(n_layer=2)
    L = 6
    # distinct tokens within a copy, so each second-copy query has exactly one induction target
    g = torch.Generator().manual_seed(4)
    idx = torch.stack([torch.randperm(61, generator=g)[:L].repeat(2) for _ in range(3)])
    T = 2 * L

    def exact(layer, T):  # layer 0: previous token; layer 1: induction (attend to i - L + 1)
        p = torch.zeros(T, T)
        p[0, 0] = 1.0
        for i in range(1, T):
            p[i, i - 1 if layer == 0 or i < L else i - L + 1] = 1.0
        return p

    with model.hooks(forced_patterns(model, exact)):
        scores = detectors.detect_heads(model, idx)
    assert torch.allclose(scores["previous-token"][0], torch.ones(4))
    assert torch.allclose(scores["induction"][1], torch.ones(4))
    # uniform causal attention: row i puts 1/(i+1) on each key, so the previous-token score is
    # the mean over rows 1..T-1 of 1/(i+1)
    with model.hooks(forced_patterns(model, uniform)):
        scores = detectors.detect_heads(model, idx)
    expected = sum(1 / (i + 1) for i in range(1, T)) / (T - 1)
    assert torch.allclose(scores["previous-token"], torch.full((2, 4), expected))
    # induction rows of the second copy (i = L .. T-1, one target each): mean of 1/(i+1)
    expected = sum(1 / (i + 1) for i in range(L, T)) / L
    assert torch.allclose(scores["induction"][:, 0], torch.full((2,), expected), atol=1e-6)


def test_custom_pattern_file_scores_like_the_builtin_one(tmp_path):
    model = random_model(n_layer=2)
    idx = induction.repeated_random_tokens(model, 5, 2, batch=2, seed=1)
    path = tmp_path / "prev.json"
    path.write_text(json.dumps(detectors.previous_token_target(idx[0]).tolist()))
    custom = detectors.load_target_pattern(path, 10)
    scores = detectors.detect_heads(model, idx, ["previous-token"], custom)
    assert torch.allclose(scores["custom"], scores["previous-token"])


@pytest.mark.parametrize(
    "content, message",
    [
        ("[[1, 0], [1, 1]]", "holds a (2, 2) array"),
        ("not json", "is not a JSON list"),
        (json.dumps((torch.ones(4, 4)).tolist()), "later keys"),
        (json.dumps((2 * torch.eye(4)).tolist()), "outside [0, 1]"),
    ],
)
def test_bad_pattern_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(
        GptlabError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        detectors.load_target_pattern(path, 4)


def test_unknown_detector_names_the_valid_ones():
    with pytest.raises(GptlabError, match="previous-token, duplicate-token, induction"):
        detectors.parse_detectors("induction,copying")


def test_per_position_loss_is_the_cross_entropy_of_each_next_token():
    model = random_model()
    idx = torch.randint(0, 61, (2, 9), generator=torch.Generator().manual_seed(3))
    losses = induction.per_position_loss(model, idx)
    logits, _ = model(idx[:, :-1])
    for b in range(2):
        for t in range(8):
            expected = F.cross_entropy(logits[b, t][None], idx[b, t + 1][None])
            assert torch.isclose(losses[b, t], expected, atol=1e-5)
    _, mean = model(idx[:, :-1], idx[:, 1:])
    assert torch.isclose(losses.mean(), mean, atol=1e-5)


def test_repeated_tokens_repeat_and_never_draw_the_end_of_text_token():
    model = random_model(vocab_size=5, block_size=40)
    idx = induction.repeated_random_tokens(model, 10, 3, batch=4, seed=0, eot_id=2)
    assert idx.shape == (4, 30)
    assert torch.equal(idx[:, :10], idx[:, 10:20]) and torch.equal(idx[:, :10], idx[:, 20:])
    assert not (idx == 2).any()


def test_repeated_loss_splits_first_copy_and_repeats():
    model = random_model()
    result = induction.repeated_tokens_loss(model, 6, 3, batch=2, seed=0)
    idx = induction.repeated_random_tokens(model, 6, 3, batch=2, seed=0)
    losses = induction.per_position_loss(model, idx).mean(dim=0)
    assert result.first_loss == pytest.approx(float(losses[:5].mean()))
    assert result.repeated_loss == pytest.approx(float(losses[5:].mean()))


@pytest.mark.parametrize(
    "length, repeats, message",
    [(1, 2, "at least 2 tokens"), (4, 1, "at least 2 copies"), (13, 2, "a length of 12 or less")],
)
def test_bad_repeated_shapes_are_one_line(length, repeats, message):
    model = random_model()  # block_size 24
    with pytest.raises(GptlabError, match=message):
        induction.repeated_random_tokens(model, length, repeats)
