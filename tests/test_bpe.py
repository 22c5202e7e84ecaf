"""The from-scratch byte-level BPE: hand-computed merges, a naive reference trainer, the slow
reference encoder against the tiktoken export, exact round-trips, saving and the CLI."""

import functools
import json
from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.tokenizers.base import (
    GPT2Tokenizer,
    get_tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_dict,
)
from gptlab.tokenizers.bpe import GPT2_SPLIT_PATTERN, BPETokenizer, merge_pair, train_bpe

TRICKY_TEXTS = [
    "Hello, world! It's 2026; we'll see.",
    "👩‍👩‍👧‍👦 family, 👍🏽 thumbs, 🇫🇷 flag",
    "e\u0301 (e + combining acute), n\u0303, a\u030a\u0323 stacked",
    "日本語の文章と中文句子，한국어 문장",
    "مرحبا بالعالم — עברית",
    "tabs\tand\nnewlines\r\n   trailing   \n\n",
    "\x00 nul, \u200b zero width, \ufeff BOM, \U0010ffff last code point",
    "",
]


def shakespeare_split(shared_data: Path) -> tuple[str, str]:
    """TinyShakespeare's train (first 90%) and val (last 10%) text."""
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    n_train = int(len(text) * 0.9)
    return text[:n_train], text[n_train:]


@functools.cache
def _trained_on_shakespeare(shared_data: Path) -> BPETokenizer:
    train_text, _ = shakespeare_split(shared_data)
    return train_bpe([train_text], vocab_size=768, progress=False)


@pytest.fixture
def shakespeare_bpe(shared_data) -> BPETokenizer:
    return _trained_on_shakespeare(shared_data)


def test_first_merges_match_the_hand_computed_classic_example():
    # "aaabdaaabac": (a,a) occurs 4 times -> 256 = "aa", text "aa a b d aa a b a c".
    # Then (a,b) and (256,a) both occur twice; the tie goes to the smaller pair (97,98) -> 257 = "ab".
    # Then (256,257) occurs twice -> 258 = "aaab"; text "aaab d aaab a c".
    tokenizer = train_bpe(["aaabdaaabac"], vocab_size=260, progress=False)
    assert tokenizer.merges == [(97, 97), (97, 98), (256, 257)]
    assert tokenizer.tokens[256:] == [b"aa", b"ab", b"aaab"]
    assert tokenizer.vocab_size == 260 and tokenizer.eot_id == 259
    assert tokenizer.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]
    assert tokenizer.encode_slow("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_merge_pair_does_not_overlap():
    assert merge_pair([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]


def _naive_merges(documents: list[str], n_merges: int) -> list[tuple[int, int]]:
    """Reference trainer: recount every pair from scratch before each merge."""
    chunks = (
        chunk for document in documents for chunk in regex.findall(GPT2_SPLIT_PATTERN, document)
    )
    words = Counter(tuple(chunk.encode("utf-8")) for chunk in chunks)
    merges = []
    for new_id in range(256, 256 + n_merges):
        pair_counts = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pair_counts[pair] += count
        best = min(pair_counts, key=lambda p: (-pair_counts[p], p))  # most frequent, then smallest
        merges.append(best)
        merged = Counter()
        for word, count in words.items():
            merged[tuple(merge_pair(word, best, new_id))] += count
        words = merged
    return merges


def test_incremental_trainer_matches_naive_recount(shared_data):
    train_text = shakespeare_split(shared_data)[0]
    documents = [train_text[:7_000], train_text[7_000:20_000]]
    tokenizer = train_bpe(documents, vocab_size=257 + 150, progress=False)
    assert tokenizer.merges == _naive_merges(documents, 150)


def test_slow_encoder_and_tiktoken_export_agree_on_real_text(shakespeare_bpe, shared_data):
    _, val_text = shakespeare_split(shared_data)
    web_path = shared_data / "openwebtext" / "openwebtext_sample.txt"
    web_text = web_path.read_text(encoding="utf-8")[:150_000]
    for text in (val_text, web_text):
        ids = shakespeare_bpe.encode(text)
        assert shakespeare_bpe.encode_slow(text) == ids
        assert shakespeare_bpe.decode(ids) == text
    exported = shakespeare_bpe.to_tiktoken()
    assert exported.encode_ordinary(val_text) == shakespeare_bpe.encode_slow(val_text)
    assert max(shakespeare_bpe.encode(web_text)) < shakespeare_bpe.eot_id
    # The trainer's own count of training tokens is what encoding the training text gives.
    train_text, _ = shakespeare_split(shared_data)
    assert shakespeare_bpe.metadata["tokens"] == len(shakespeare_bpe.encode(train_text))
    assert shakespeare_bpe.metadata["bytes"] == len(train_text.encode("utf-8"))


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_round_trip_on_emoji_combining_marks_and_cjk(shakespeare_bpe, text):
    ids = shakespeare_bpe.encode(text)
    assert shakespeare_bpe.encode_slow(text) == ids
    assert shakespeare_bpe.decode(ids) == text
    assert shakespeare_bpe.decode_bytes(ids) == text.encode("utf-8")


# shared_data is a read-only path, safe to share between generated inputs.
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text())
def test_round_trip_on_arbitrary_unicode(shared_data, text):
    tokenizer = _trained_on_shakespeare(shared_data)
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode_slow(text) == ids


def test_end_of_text_is_ordinary_text_unless_allowed(shakespeare_bpe):
    text = "the end<|endoftext|>The start"
    ordinary = shakespeare_bpe.encode(text)
    assert shakespeare_bpe.eot_id not in ordinary
    assert shakespeare_bpe.decode(ordinary) == text
    special = shakespeare_bpe.encode(text, allow_special=True)
    assert special.count(shakespeare_bpe.eot_id) == 1
    eot = shakespeare_bpe.eot_id
    assert special == shakespeare_bpe.encode("the end") + [eot] + shakespeare_bpe.encode(
        "The start"
    )
    assert shakespeare_bpe.encode_slow(text) == ordinary
    assert shakespeare_bpe.encode_slow(text, allow_special=True) == special
    assert shakespeare_bpe.decode(special) == text
    assert shakespeare_bpe.eot_id == shakespeare_bpe.vocab_size - 1 == 767


def test_save_load_round_trip(shakespeare_bpe, shared_data, tmp_path):
    _, val_text = shakespeare_split(shared_data)
    path = tmp_path / "bpe.json"
    save_tokenizer(shakespeare_bpe, path)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["type"] == "bpe" and saved["special_tokens"] == {"<|endoftext|>": 767}
    for loaded in (
        load_tokenizer(path),
        get_tokenizer(str(path)),
        tokenizer_from_dict(shakespeare_bpe.to_dict()),
    ):
        assert isinstance(loaded, BPETokenizer)
        assert loaded.merges == shakespeare_bpe.merges and loaded.vocab_size == 767 + 1
        assert loaded.encode(val_text) == shakespeare_bpe.encode(val_text)
        assert loaded.metadata == shakespeare_bpe.metadata


def test_damaged_file_is_a_clear_error(shakespeare_bpe):
    d = shakespeare_bpe.to_dict()
    with pytest.raises(GptlabError, match="inconsistent"):
        BPETokenizer.from_dict({**d, "tokens": d["tokens"][:-1]})
    with pytest.raises(GptlabError, match="refers to a token"):
        BPETokenizer.from_dict({**d, "merges": [[5, 999]]})
    with pytest.raises(GptlabError, match="merges"):
        BPETokenizer.from_dict({"type": "bpe"})


def test_two_pairs_spelling_the_same_bytes_share_one_token():
    # "ab"+"c" and "a"+"bc" both spell "abc": the second merge reuses token 257.
    tokenizer = BPETokenizer([(97, 98), (256, 99), (98, 99), (97, 258)])
    assert tokenizer.tokens[256:] == [b"ab", b"abc", b"bc"]
    assert tokenizer.vocab_size == 260
    for text in ("abc", "xbcabcbcab", "aabbcc"):
        assert tokenizer.encode_slow(text) == tokenizer.encode(text)


def test_bad_vocab_size_and_empty_corpus_are_errors():
    with pytest.raises(GptlabError, match="at least 257"):
        train_bpe(["some text"], vocab_size=256, progress=False)
    with pytest.raises(GptlabError, match="empty"):
        train_bpe([], vocab_size=300, progress=False)
    with pytest.raises(GptlabError, match="empty"):
        train_bpe(["", ""], vocab_size=300, progress=False)


def test_running_out_of_pairs_stops_early_with_a_warning():
    # Chunks "abc" and " abc": merges (a,b), ("ab",c), (" ","abc"), then nothing is left to merge.
    with pytest.warns(UserWarning, match="has 260 tokens, not the 1000"):
        tokenizer = train_bpe(["abc abc"], vocab_size=1000, progress=False)
    assert tokenizer.tokens[256:] == [b"ab", b"abc", b" abc"]
    assert tokenizer.vocab_size == 260 and tokenizer.metadata["requested_vocab_size"] == 1000
    assert tokenizer.decode(tokenizer.encode("abc abc")) == "abc abc"
    assert train_bpe(["x"], vocab_size=257, progress=False).vocab_size == 257


def test_cli_train_encode_and_compare(shared_data, tmp_path, capsys):
    train_text, val_text = shakespeare_split(shared_data)
    corpus = tmp_path / "train.txt"
    corpus.write_text(train_text[:200_000], encoding="utf-8")
    val = tmp_path / "val.txt"
    val.write_text(val_text, encoding="utf-8")
    out = tmp_path / "tok.json"

    def train(vocab_size: int, out: Path, *flags: str) -> int:
        return main(
            [
                "tokenizer",
                "train",
                str(corpus),
                "--vocab-size",
                str(vocab_size),
                "--out",
                str(out),
                *flags,
            ]
        )

    assert train(300, out) == 0
    assert "saved to" in capsys.readouterr().out
    tokenizer = load_tokenizer(out)
    assert tokenizer.vocab_size == 300 and tokenizer.metadata["source"] == str(corpus)
    assert tokenizer.merges == train_bpe([train_text[:200_000]], 300, progress=False).merges

    # An existing --out is kept unless --overwrite.
    before = out.read_bytes()
    assert train(280, out) == 1
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert train(280, out, "--overwrite") == 0
    assert load_tokenizer(out).vocab_size == 280
    assert train(100, tmp_path / "x.json") == 1
    assert "at least 257" in capsys.readouterr().err

    capsys.readouterr()
    argv = ["tokenizer", "encode", "--ids-only", "--tokenizer", str(out), "--text", "To be, or not"]
    assert main(argv) == 0
    expected_ids = load_tokenizer(out).encode("To be, or not")
    assert capsys.readouterr().out.split() == [str(i) for i in expected_ids]
    argv = ["tokenizer", "encode", "--ids-only", "--text", "Hello<|endoftext|>", "--allow-special"]
    assert main(argv) == 0
    expected_ids = GPT2Tokenizer().encode("Hello<|endoftext|>", allow_special=True)
    assert capsys.readouterr().out.split() == [str(i) for i in expected_ids]

    assert main(["tokenizer", "compare", str(out), "--text-file", str(val)]) == 0
    report = capsys.readouterr().out
    n_bytes = len(val_text.encode("utf-8"))
    expected = n_bytes / len(load_tokenizer(out).encode(val_text))
    assert f"{expected:.3f}" in report and "gpt2" in report
