"""`gptlab prepare`: exact splits and tokens against hand-computed references, budgets, shards,
the no-op re-run, parallel == serial, and the bad-input errors (nothing half-written left)."""

import errno
import hashlib
import json
import shutil

import numpy as np
import pytest
import tiktoken

from gptlab.cli import main
from gptlab.data.parallel import split_at_token_boundaries
from gptlab.data.prepare import prepare_dataset
from gptlab.data.prepared_folder import load_prepared_tokenizer, read_meta
from gptlab.data.shards import ShardWriter, token_dtype
from gptlab.data.sources import download_path
from gptlab.errors import GptlabError
from gptlab.tokenizers.base import CharTokenizer, save_tokenizer


@pytest.fixture
def shakespeare_text(shared_data):
    """The TinyShakespeare text, also seeded into the cache where the source expects it."""
    source = shared_data / "tinyshakespeare" / "input.txt"
    cached = download_path("tinyshakespeare")
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, cached)
    return source.read_text(encoding="utf-8")


@pytest.fixture
def fineweb_edu(shared_data):
    path = shared_data / "fineweb_edu" / "sample.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    return path, texts


def split_tokens(folder, split) -> np.ndarray:
    meta = read_meta(folder)
    arrays = [
        np.fromfile(folder / s["file"], dtype=meta["dtype"])
        for s in meta["splits"][split]["shards"]
    ]
    return np.concatenate(arrays) if arrays else np.array([], dtype=meta["dtype"])


def test_tinyshakespeare_char_split_is_exactly_nanogpts(shakespeare_text, tmp_path):
    folder = prepare_dataset(
        "tinyshakespeare", tokenizer="char", out=tmp_path / "ts", show_progress=False
    )
    meta = read_meta(folder)
    assert meta["splits"]["train"]["tokens"] == 1_003_854
    assert meta["splits"]["val"]["tokens"] == 111_540
    # Reference: nanoGPT's shakespeare_char/prepare.py, computed by hand here.
    chars = sorted(set(shakespeare_text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in shakespeare_text], dtype=np.uint16)
    n_train = int(len(data) * 0.9)
    assert np.array_equal(split_tokens(folder, "train"), data[:n_train])
    assert np.array_equal(split_tokens(folder, "val"), data[n_train:])
    assert meta["vocab_size"] == 65 and meta["dtype"] == "uint16" and meta["eot_id"] is None
    assert meta["split_by"] == "tail" and meta["source"]["name"] == "tinyshakespeare"
    assert load_prepared_tokenizer(folder).chars == chars
    for shard in meta["splits"]["train"]["shards"] + meta["splits"]["val"]["shards"]:
        assert hashlib.sha256((folder / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]


def test_preparing_again_is_a_no_op_and_other_settings_get_another_folder(shakespeare_text, capsys):
    first = prepare_dataset("tinyshakespeare", tokenizer="char", workers=1)
    stamp = (first / "meta.json").stat().st_mtime_ns
    capsys.readouterr()
    assert prepare_dataset("tinyshakespeare", tokenizer="char", workers=2) == first
    assert "already prepared with the same settings" in capsys.readouterr().err
    assert (first / "meta.json").stat().st_mtime_ns == stamp
    other = prepare_dataset(
        "tinyshakespeare", tokenizer="char", val_fraction=0.2, show_progress=False
    )
    assert other != first and other.parent == first.parent
    assert [p.name for p in first.parent.iterdir() if p.name.startswith(".")] == []


def test_gpt2_documents_split_by_document_with_eot(fineweb_edu, tmp_path):
    path, texts = fineweb_edu
    serial = prepare_dataset(str(path), out=tmp_path / "serial", workers=1, show_progress=False)
    parallel = prepare_dataset(str(path), out=tmp_path / "parallel", workers=2, show_progress=False)
    # Reference: tiktoken on each document, EOT after each; at val_fraction 0.1 the validation
    # documents are 0, 10, 20, ... (ceil(150 * 0.1) = 15 of them).
    enc = tiktoken.get_encoding("gpt2")
    docs = [enc.encode_ordinary(t) + [enc.eot_token] for t in texts]
    expected_val = np.concatenate([docs[i] for i in range(len(docs)) if i % 10 == 0])
    expected_train = np.concatenate([docs[i] for i in range(len(docs)) if i % 10 != 0])
    for folder in (serial, parallel):
        meta = read_meta(folder)
        assert np.array_equal(split_tokens(folder, "train"), expected_train)
        assert np.array_equal(split_tokens(folder, "val"), expected_val)
        assert (meta["splits"]["train"]["documents"], meta["splits"]["val"]["documents"]) == (
            135,
            15,
        )
        assert meta["eot_id"] == 50256 and meta["vocab_size"] == 50257
    assert read_meta(serial)["splits"] == read_meta(parallel)["splits"]  # same shards, same sha256


def test_budgets_and_shards(fineweb_edu, tmp_path):
    path, texts = fineweb_edu
    whole = prepare_dataset(str(path), out=tmp_path / "whole", workers=1, show_progress=False)
    sharded = prepare_dataset(
        str(path), out=tmp_path / "sharded", shard_tokens=7_000, workers=1, show_progress=False
    )
    meta = read_meta(sharded)
    shards = meta["splits"]["train"]["shards"]
    assert len(shards) == -(-meta["splits"]["train"]["tokens"] // 7_000)
    assert all(s["tokens"] == 7_000 for s in shards[:-1])
    assert np.array_equal(split_tokens(sharded, "train"), split_tokens(whole, "train"))

    budget = prepare_dataset(
        str(path), out=tmp_path / "tokens", max_tokens=12_345, workers=1, show_progress=False
    )
    splits = read_meta(budget)["splits"]
    assert splits["train"]["tokens"] + splits["val"]["tokens"] == 12_345
    # Reference: the stream of documents (EOT after each) cut after 12,345 tokens, then routed.
    enc = tiktoken.get_encoding("gpt2")
    expected = {"train": [], "val": []}
    remaining = 12_345
    for i, text in enumerate(texts):
        kept = (enc.encode_ordinary(text) + [enc.eot_token])[:remaining]
        expected["val" if i % 10 == 0 else "train"] += kept
        remaining -= len(kept)
        if remaining == 0:
            break
    assert split_tokens(budget, "train").tolist() == expected["train"]
    assert split_tokens(budget, "val").tolist() == expected["val"]

    few = prepare_dataset(
        str(path), out=tmp_path / "docs", max_docs=20, workers=1, show_progress=False
    )
    splits = read_meta(few)["splits"]
    assert (splits["train"]["documents"], splits["val"]["documents"]) == (18, 2)
    assert (
        splits["val"]["tokens"]
        == len(enc.encode_ordinary(texts[0])) + len(enc.encode_ordinary(texts[10])) + 2
    )


def test_char_tokens_of_documents_under_a_budget(fineweb_edu, tmp_path):
    path, texts = fineweb_edu
    folder = prepare_dataset(
        str(path),
        tokenizer="char",
        out=tmp_path / "c",
        max_tokens=20_000,
        workers=1,
        show_progress=False,
    )
    tokenizer = load_prepared_tokenizer(folder)
    # Reference: documents concatenated (no EOT for characters), cut after 20,000 characters.
    expected = {"train": "", "val": ""}
    remaining = 20_000
    for i, text in enumerate(texts):
        expected["val" if i % 10 == 0 else "train"] += text[:remaining]
        remaining -= len(text[:remaining])
        if remaining == 0:
            break
    for split in ("train", "val"):
        assert tokenizer.decode(split_tokens(folder, split).tolist()) == expected[split]


def test_spawned_workers_give_the_same_shards(fineweb_edu, tmp_path, monkeypatch):
    # Linux forks the workers; macOS and Windows spawn them, rebuilding the tokenizer from its dict.
    import gptlab.data.parallel as parallel

    serial = prepare_dataset(
        str(fineweb_edu[0]),
        tokenizer="char",
        out=tmp_path / "serial",
        workers=1,
        show_progress=False,
    )
    monkeypatch.setattr(parallel.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    spawned = prepare_dataset(
        str(fineweb_edu[0]),
        tokenizer="char",
        out=tmp_path / "spawned",
        workers=2,
        show_progress=False,
    )
    assert read_meta(spawned)["splits"] == read_meta(serial)["splits"]


def test_single_text_pieces_tokenize_like_the_whole(shakespeare_text, fineweb_edu):
    enc = tiktoken.get_encoding("gpt2")
    text = shakespeare_text[:200_000] + "".join(fineweb_edu[1][:20])
    pieces = list(split_at_token_boundaries(text, piece_chars=3_000))
    assert len(pieces) > 50 and "".join(pieces) == text
    assert sum((enc.encode_ordinary(p) for p in pieces), []) == enc.encode_ordinary(text)


def test_a_document_longer_than_a_batch_is_encoded_in_pieces_to_the_same_tokens(
    shakespeare_text, monkeypatch
):
    """A huge document is tokenized piece by piece (bounded memory: a 50 MB one took ~800 MB as
    Python ints, 423 MB now, BENCHMARKS.md) and gives exactly the whole document's tokens."""
    from gptlab.data import parallel
    from gptlab.tokenizers.base import GPT2Tokenizer

    monkeypatch.setattr(parallel, "BATCH_CHARS", 20_000)  # TinyShakespeare is 56 batches then
    gpt2 = GPT2Tokenizer()
    encoded_lengths = []
    whole_encode = gpt2.encode
    monkeypatch.setattr(
        gpt2, "encode", lambda text: encoded_lengths.append(len(text)) or whole_encode(text)
    )
    documents = [shakespeare_text, "a short one", shakespeare_text[:30_000]]
    tokens, lengths = parallel.encode_documents(gpt2, documents, np.dtype(np.uint16), True)
    assert max(encoded_lengths) < 25_000  # no piece near the whole 1.1 MB: memory stays bounded
    enc = tiktoken.get_encoding("gpt2")
    expected = [enc.encode_ordinary(doc) + [enc.eot_token] for doc in documents]
    assert lengths.tolist() == [len(ids) for ids in expected]
    assert tokens.tolist() == [t for ids in expected for t in ids]


def test_single_text_with_gpt2_splits_by_the_tail(shakespeare_text, tmp_path):
    folder = prepare_dataset("tinyshakespeare", out=tmp_path / "ts", workers=2, show_progress=False)
    enc = tiktoken.get_encoding("gpt2")
    tokens = enc.encode_ordinary(shakespeare_text) + [enc.eot_token]
    n_train = len(tokens) * 9 // 10
    assert np.array_equal(split_tokens(folder, "train"), tokens[:n_train])
    assert np.array_equal(split_tokens(folder, "val"), tokens[n_train:])


def test_a_saved_tokenizer_file_is_used(shakespeare_text, tmp_path):
    tokenizer_file = tmp_path / "chars.json"
    save_tokenizer(CharTokenizer.from_text(shakespeare_text), tokenizer_file)
    from_file = prepare_dataset(
        "tinyshakespeare",
        tokenizer=str(tokenizer_file),
        out=tmp_path / "a",
        workers=1,
        show_progress=False,
    )
    built = prepare_dataset(
        "tinyshakespeare", tokenizer="char", out=tmp_path / "b", workers=1, show_progress=False
    )
    assert np.array_equal(split_tokens(from_file, "train"), split_tokens(built, "train"))
    assert read_meta(from_file)["tokenizer"]["spec"] == str(tokenizer_file)


def test_a_vocabulary_past_65536_is_stored_as_uint32(tmp_path):
    chars = [chr(c) for c in range(0x20000, 0x20000 + 70_000)]
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(10):
        (docs / f"{i}.txt").write_text("".join(chars[i::10]), encoding="utf-8")
    folder = prepare_dataset(
        str(docs), tokenizer="char", out=tmp_path / "wide", workers=1, show_progress=False
    )
    meta = read_meta(folder)
    assert meta["dtype"] == "uint32" and meta["vocab_size"] == 70_000
    assert split_tokens(folder, "val").tolist() == list(range(0, 70_000, 10))  # document 0
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32


def test_invalid_utf8_is_counted_in_meta(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello \xff\xfe world, " * 50)
    folder = prepare_dataset(str(path), tokenizer="char", out=tmp_path / "out", workers=1)
    assert read_meta(folder)["invalid_utf8_replaced"] == 100
    assert "replaced 100 invalid UTF-8" in capsys.readouterr().err


def test_bad_inputs_are_one_line_errors(tmp_path, shared_data, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    one_doc = tmp_path / "one.jsonl"
    one_doc.write_text('{"text": "a single document"}\n')
    cases = [
        (["prepare", str(empty)], "is empty"),
        (["prepare", str(one_doc)], "too short to split"),
        (["prepare", "nonsense"], "unknown source 'nonsense'"),
        (["prepare", str(one_doc), "--val-fraction", "1.5"], "val_fraction must be in"),
        (
            ["prepare", str(one_doc), "--text-column", "body"],
            "no field 'body'; its fields are: text",
        ),
        (["prepare", str(one_doc), "--out", str(shared_data)], "not a prepared dataset"),
    ]
    for argv, message in cases:
        assert main(argv + ["--quiet"]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_write_error_leaves_nothing_that_looks_prepared(fineweb_edu, tmp_path, monkeypatch):
    written = []

    def failing_write(self, tokens):
        if written:
            raise OSError(
                errno.ENOSPC, "No space left on device", str(self.folder / "train_000001.bin")
            )
        written.append(tokens.size)

    monkeypatch.setattr(ShardWriter, "write", failing_write)
    out = tmp_path / "out"
    with pytest.raises(GptlabError, match="No space left on device.*nothing was kept"):
        prepare_dataset(str(fineweb_edu[0]), out=out, workers=1, show_progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(GptlabError, match="not a prepared dataset.*gptlab prepare"):
        read_meta(out)


def test_cli_prepares_and_prints_the_folder(fineweb_edu, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "prepare",
                str(fineweb_edu[0]),
                "--out",
                str(out),
                "--workers",
                "1",
                "--max-docs",
                "30",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == str(out)
    assert "doc/s" in captured.err and "tok/s" in captured.err and "30.0/30.0" in captured.err
    assert read_meta(out)["budget"] == {"max_docs": 30, "max_tokens": None}


def test_verify_finds_a_shard_edited_in_place(fineweb_edu, tmp_path, capsys):
    out = tmp_path / "v"
    prepare_dataset(str(fineweb_edu[0]), out=out, workers=1, max_docs=20, show_progress=False)
    assert main(["prepare", str(out), "--verify", "--quiet"]) == 0
    checked = (
        read_meta(out)["splits"]["train"]["tokens"] + read_meta(out)["splits"]["val"]["tokens"]
    )
    assert f"({checked * 2:,} bytes checked)" in capsys.readouterr().out
    shard = out / read_meta(out)["splits"]["val"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF  # same size, one token changed: only the hash can tell
    shard.write_bytes(bytes(data))
    assert main(["prepare", str(out), "--verify", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "split 'val' does not match the sha256" in err and "\n" not in err
    # Preparing with the same settings finds the folder prepared, and --verify still checks it.
    argv = ["prepare", str(fineweb_edu[0]), "--out", str(out), "--workers", "1", "--max-docs", "20"]
    assert main([*argv, "--quiet"]) == 0
    assert main([*argv, "--quiet", "--verify"]) == 1
