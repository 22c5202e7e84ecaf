"""`gptlab chat` remembers: the conversation in the Alpaca template, one KV cache across turns.

Reference: `generate` on the whole conversation written out by hand, read in one piece."""

from __future__ import annotations

import io

import pytest
import torch
from model_testing import spiky_model

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.finetune.chat import Conversation
from gptlab.finetune.instruct import answer_config, format_prompt
from gptlab.inference.generate import generate
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,:#!?\n"


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.from_text(ALPHABET)


def chat_model(tokenizer, block_size: int = 512):
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32
    )
    return spiky_model(config)


def by_hand(turns: list[tuple[str, str]], instruction: str) -> str:
    """The Alpaca conversation, written out: format_prompt's text for the first instruction,
    its answer, then one more instruction / response block per turn."""
    if not turns:
        return format_prompt(instruction)
    text = format_prompt(turns[0][0]) + turns[0][1]
    for asked, answered in turns[1:]:
        text += f"\n\n### Instruction:\n{asked}\n\n### Response:\n{answered}"
    return text + f"\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def test_the_second_answer_is_generate_on_the_whole_conversation(tokenizer):
    model = chat_model(tokenizer)
    config = answer_config(20)
    conversation = Conversation(model, tokenizer, config)
    fed = []  # (tokens fed, tokens already in the cache) per forward pass

    def record(_module, args, kwargs):
        fed.append((args[0].size(1), kwargs["kv_cache"].seq_len))

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        _, pieces = conversation.ask("Name a colour.")
        first = "".join(pieces)
        _, pieces = conversation.ask("And another one?")
        second = "".join(pieces)
    finally:
        hook.remove()
    assert first.strip() and second.strip()
    assert conversation.turns[0] == ("Name a colour.", first.strip())

    whole = tokenizer.encode(by_hand([("Name a colour.", first.strip())], "And another one?"))
    expected = generate(model, whole, config, tokenizer=tokenizer)[0].text
    assert second == expected
    # The second turn read only what the cache had not seen: the new block (and the tail of the
    # first answer), never the preamble and the first instruction again.
    first_prompt = len(tokenizer.encode(format_prompt("Name a colour.")))
    prefills = [(n, past) for n, past in fed if n > 1]
    assert prefills[0] == (first_prompt, 0)
    n, past = prefills[1]
    assert past >= first_prompt and past + n == len(whole)


def test_reset_forgets_and_answers_as_the_first_turn(tokenizer):
    model = chat_model(tokenizer)
    conversation = Conversation(model, tokenizer, answer_config(12))
    alone = "".join(conversation.ask("Say hi.")[1])
    "".join(conversation.ask("Again.")[1])
    conversation.reset()
    assert conversation.turns == [] and conversation.cache.seq_len == 0
    assert "".join(conversation.ask("Say hi.")[1]) == alone


def test_the_oldest_turns_are_dropped_to_fit_the_context(tokenizer):
    model = chat_model(tokenizer, block_size=256)
    config = answer_config(16)
    conversation = Conversation(model, tokenizer, config)
    dropped_counts = []
    for i in range(4):
        dropped, pieces = conversation.ask(f"Turn {'abcd'[i]}, tell me more.")
        "".join(pieces)
        dropped_counts.append(dropped)
    assert dropped_counts[0] == 0 and sum(dropped_counts) > 0
    # What was kept is answered exactly as the whole kept conversation read in one piece.
    kept = list(conversation.turns)
    last_instruction, last_answer = kept[-1]
    ids = tokenizer.encode(by_hand(kept[:-1], last_instruction))
    assert len(ids) + 16 <= 256
    expected = generate(model, ids, config, tokenizer=tokenizer)[0].text
    assert last_answer == expected.strip()


def test_gptlab_chat_remembers_resets_and_drops(tokenizer, tmp_path, monkeypatch, capsys):
    from gptlab.checkpoints.model_folder import save_model

    torch.manual_seed(0)
    save_model(tmp_path / "m", chat_model(tokenizer, block_size=200), tokenizer)
    lines = "Say hi.\nAgain.\n/reset\nSay hi.\nOne.\nTwo.\nThree.\nexit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    args = [
        "chat",
        "--checkpoint",
        str(tmp_path / "m"),
        "--max-new-tokens",
        "30",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out, err = capsys.readouterr()
    answers = out.split("\n")
    assert "conversation cleared" in err
    assert "dropped the oldest" in err and err.count("\n") >= 2
    assert len(answers) >= 6


def test_a_model_whose_tokenizer_cannot_write_the_template_cannot_chat():
    """A character model without '#' refused every line typed, each in its own words; now the
    conversation is refused once, saying why."""
    without_hash = CharTokenizer.from_text(ALPHABET.replace("#", ""))
    model = chat_model(without_hash)
    with pytest.raises(GptlabError, match="this model cannot chat: its tokenizer cannot write"):
        Conversation(model, without_hash, answer_config(8))
