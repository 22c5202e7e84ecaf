"""Tokenizers: exact round-trips on real text and arbitrary Unicode, special tokens, char policies, JSON."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptlab.errors import GptlabError
from gptlab.tokenizers.base import (
    CharTokenizer,
    GPT2Tokenizer,
    get_tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_dict,
)

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    return GPT2Tokenizer()


@pytest.fixture
def shakespeare(shared_data) -> str:
    return (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------- GPT-2 BPE


def test_gpt2_sizes(gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.eot_id == 50256
    assert gpt2.encode("Hello world") == [15496, 995]  # OpenAI's ids


def test_gpt2_round_trip_on_real_text(gpt2, shakespeare, shared_data):
    texts = [shakespeare[:200_000]]
    texts.append(
        (shared_data / "openwebtext" / "openwebtext_sample.txt").read_text(encoding="utf-8")
    )
    with open(shared_data / "fineweb" / "sample.jsonl", encoding="utf-8") as f:
        texts.extend(json.loads(line)["text"] for line in f)  # includes non-English documents
    for text in texts:
        assert gpt2.decode(gpt2.encode(text)) == text
    assert [gpt2.decode(ids) for ids in gpt2.encode_batch(texts[:20])] == texts[:20]


@pytest.mark.parametrize(
    "text",
    [
        "emoji 🙂🦜👩‍👩‍👧 flags 🇫🇷",
        "combining: e\u0301 a\u0308\u0301 Z\u0335\u0353",
        "CJK 世界 こんにちは 한국어",
        "RTL مرحبا עברית, zero width \u200b\u200d, BOM \ufeff",
        "  leading/trailing whitespace\n\n\t ",
        "",
    ],
)
def test_gpt2_round_trip_on_unicode(gpt2, text):
    assert gpt2.decode(gpt2.encode(text)) == text


def test_gpt2_round_trip_on_random_code_points(gpt2):
    rng = random.Random(0)
    code_points = [
        c for c in (rng.randrange(0x110000) for _ in range(5000)) if not 0xD800 <= c <= 0xDFFF
    ]
    text = "".join(map(chr, code_points))
    assert gpt2.decode(gpt2.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_gpt2_round_trip_property(text):
    gpt2 = GPT2Tokenizer()
    assert gpt2.decode(gpt2.encode(text)) == text


def test_the_shipped_gpt2_files_tokenize_as_tiktokens_own_download(gpt2, shared_data):
    """The repository's copy of the two GPT-2 files gives tiktoken's own encoding, token for token
    (tiktoken loads its reference through its own cache, which conftest seeds with the same files
    under the names a real download gets, so tiktoken's sha256 checks pass on them)."""
    import tiktoken

    reference = tiktoken.get_encoding("gpt2")
    text = (shared_data / "openwebtext" / "openwebtext_sample.txt").read_text(encoding="utf-8")
    assert gpt2.encode(text) == reference.encode_ordinary(text)
    assert gpt2.encode("a <|endoftext|> b", allow_special=True) == reference.encode(
        "a <|endoftext|> b", allowed_special="all"
    )
    assert gpt2.vocab_size == reference.n_vocab and gpt2.eot_id == reference.eot_token


def test_gpt2_endoftext_is_text_unless_allowed(gpt2):
    text = f"end{EOT}start"
    ordinary = gpt2.encode(text)
    assert gpt2.eot_id not in ordinary
    assert gpt2.decode(ordinary) == text
    special = gpt2.encode(text, allow_special=True)
    assert special == gpt2.encode("end") + [gpt2.eot_id] + gpt2.encode("start")
    assert gpt2.decode(special) == text


def test_gpt2_json_round_trip(gpt2, tmp_path):
    save_tokenizer(gpt2, tmp_path / "tokenizer.json")
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert isinstance(loaded, GPT2Tokenizer)
    assert loaded.encode("A short test.") == gpt2.encode("A short test.")
    assert isinstance(get_tokenizer("gpt2"), GPT2Tokenizer)


# ------------------------------------------------------------------------------------- characters


def test_char_vocabulary_from_tinyshakespeare(shakespeare):
    tokenizer = CharTokenizer.from_text(shakespeare)
    assert tokenizer.vocab_size == 65
    assert tokenizer.chars == sorted(set(shakespeare))
    assert tokenizer.chars[:3] == ["\n", " ", "!"] and tokenizer.eot_id is None
    assert CharTokenizer.from_text(shakespeare[::-1]).chars == tokenizer.chars  # order-independent
    ids = tokenizer.encode(shakespeare)
    assert tokenizer.decode(ids) == shakespeare
    assert max(ids) == 64


def test_char_unknown_characters_are_named(shakespeare):
    tokenizer = CharTokenizer.from_text(shakespeare)
    with pytest.raises(GptlabError, match=r"2 character\(s\).*'é'.*'🙂'"):
        tokenizer.encode("café 🙂 is here")


def test_char_drop_and_replace_policies():
    chars = list(" abc?")
    dropping = CharTokenizer(chars, unknown="drop")
    assert dropping.decode(dropping.encode("abxc d")) == "abc "
    replacing = CharTokenizer(chars, unknown="replace", replacement="?")
    assert replacing.decode(replacing.encode("abxc d")) == "ab?c ?"
    with pytest.raises(GptlabError, match="replacement"):
        CharTokenizer(chars, unknown="replace", replacement="z")
    with pytest.raises(GptlabError, match="policy"):
        CharTokenizer(chars, unknown="ignore")


def test_char_json_round_trip(tmp_path, shakespeare):
    for tokenizer in (
        CharTokenizer.from_text(shakespeare),
        CharTokenizer(list("ab é🙂"), unknown="replace", replacement=" "),
    ):
        save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
        loaded = load_tokenizer(tmp_path / "tokenizer.json")
        assert loaded.to_dict() == tokenizer.to_dict()
        sample = "".join(tokenizer.chars[::-1]) + "zz"
        if tokenizer.unknown == "error":
            sample = sample[:-2]
        assert loaded.encode(sample) == tokenizer.encode(sample)


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(GptlabError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(GptlabError, match="not valid JSON"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(GptlabError, match="unknown tokenizer type"):
        tokenizer_from_dict({"type": "sentencepiece"})
