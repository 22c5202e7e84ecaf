"""Speculative decoding: exactly the target's greedy tokens, whatever the draft proposes."""

import math
import string

import pytest
from model_testing import spiky_model

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.inference.generate import GenerationConfig, generate
from gptlab.inference.speculative import check_draft_compatible, speculative_generate
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

CHARS = list(" .,;!?\n" + string.ascii_lowercase + string.ascii_uppercase)


def char_model(seed: int, n_layer: int = 2, n_embd: int = 32) -> GPT:
    config = ModelConfig(
        vocab_size=len(CHARS), block_size=64, n_layer=n_layer, n_head=4, n_embd=n_embd
    )
    return spiky_model(config, seed)


@pytest.fixture(scope="module")
def target() -> GPT:
    return char_model(0, n_layer=3, n_embd=48)


def target_greedy(target, prompt, n):
    config = GenerationConfig(max_new_tokens=n, temperature=0, stop_at_eot=False)
    return generate(target, prompt, config)[0].token_ids


@pytest.mark.parametrize("draft_tokens", [1, 3, 5])
def test_a_draft_that_disagrees_often_still_gives_the_target_greedy_tokens(target, draft_tokens):
    draft = char_model(1)  # unrelated random weights: mostly wrong guesses
    for prompt in ([1, 2, 3], [9] * 7, list(range(10, 30))):
        result = speculative_generate(target, draft, prompt, 30, draft_tokens=draft_tokens)
        assert result.token_ids == target_greedy(target, prompt, 30)
        assert result.accepted < result.proposed  # the draft really did disagree
        assert len(set(result.token_ids)) > 3


def test_the_target_as_its_own_draft_is_always_accepted(target):
    result = speculative_generate(target, target, [4, 5, 6], 30, draft_tokens=4)
    assert result.token_ids == target_greedy(target, [4, 5, 6], 30)
    assert result.acceptance_rate == 1.0
    assert result.target_passes == math.ceil(30 / 5)  # k + 1 tokens per target pass


def test_end_of_text_stops_and_is_not_kept(target):
    reference = target_greedy(target, [1, 2, 3], 30)
    eot = reference[10]
    result = speculative_generate(target, char_model(1), [1, 2, 3], 30, eot_id=eot)
    assert result.token_ids == reference[: reference.index(eot)]


def test_incompatible_drafts_raise(target):
    other_vocab = GPT(
        ModelConfig(vocab_size=len(CHARS) + 1, block_size=64, n_layer=1, n_head=2, n_embd=8)
    )
    with pytest.raises(GptlabError, match="vocabulary"):
        speculative_generate(target, other_vocab, [1, 2], 5)
    with pytest.raises(GptlabError, match="tokenizer differs"):
        check_draft_compatible(CharTokenizer(CHARS), CharTokenizer(CHARS[::-1]))
    short = GPT(ModelConfig(vocab_size=len(CHARS), block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(GptlabError, match="block_size"):
        speculative_generate(target, short, [1, 2], 10)


def test_sample_cli_with_a_draft_prints_the_greedy_text(target, tmp_path, capsys):
    tokenizer = CharTokenizer(CHARS)
    save_model(tmp_path / "target", target, tokenizer)
    save_model(tmp_path / "draft", char_model(1), tokenizer)
    save_model(tmp_path / "other", char_model(1), CharTokenizer(CHARS[::-1]))
    base = [
        "sample",
        "--checkpoint",
        str(tmp_path / "target"),
        "--device",
        "cpu",
        "--prompt",
        "Hello",
    ]
    flags = ["--greedy", "--max-new-tokens", "25"]
    assert main([*base, *flags, "--no-stream"]) == 0
    plain = capsys.readouterr().out
    assert main([*base, *flags, "--draft", str(tmp_path / "draft"), "--draft-tokens", "3"]) == 0
    out, err = capsys.readouterr()
    assert out == plain
    assert err.startswith("speculative decoding: ") and "accepted" in err
    assert main([*base, *flags, "--draft", str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tokenizer differs" in err
    assert main([*base, "--max-new-tokens", "5", "--draft", str(tmp_path / "draft")]) == 1
    assert "--greedy" in capsys.readouterr().err
