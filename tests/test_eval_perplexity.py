"""Perplexity and bits-per-byte against hand computations; sliding windows; bad input via the CLI."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptlab.cli import main
from gptlab.eval.perplexity import (
    evaluate_prepared,
    evaluate_text,
    evaluate_tokens,
    sliding_windows,
    token_byte_lengths,
)
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer, GPT2Tokenizer

TEXT = (
    "Größe, café, naïve: ünïcödé bytes count twice. The quick brown fox jumps over the lazy dog.\n"
    * 2
)


@pytest.fixture(scope="module")
def char_model():
    """A small random character-level model with a 16-token context."""
    tokenizer = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32
    )
    model = GPT(config).eval()
    with torch.no_grad():  # a wider init than GPT-2's, so predictions differ from uniform
        model.wte.weight.mul_(20)
    return model, tokenizer


def nll_of_targets(model, inputs: list[int], targets: list[int]) -> float:
    """Total negative log-likelihood of `targets` after `inputs` (one window, every target counted)."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([inputs]))
    return F.cross_entropy(logits[0].double(), torch.tensor(targets), reduction="sum").item()


def nll_of_next(model, context: list[int], target: int) -> float:
    """Negative log-likelihood of one token after `context`."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([context]))
    return -torch.log_softmax(logits[0, -1].double(), dim=-1)[target].item()


def test_perplexity_and_bits_per_byte_by_hand():
    tokenizer = CharTokenizer.from_text(TEXT)
    torch.manual_seed(1)
    model = GPT(
        ModelConfig(vocab_size=tokenizer.vocab_size, block_size=256, n_layer=1, n_head=2, n_embd=16)
    )
    ids = tokenizer.encode(TEXT)
    nats = nll_of_targets(model, ids[:-1], ids[1:])
    # No end-of-text token in a character vocabulary: the first character is context, not scored.
    scored_bytes = len(TEXT[1:].encode("utf-8"))
    assert scored_bytes > len(TEXT) - 1  # the text has multi-byte characters

    result = evaluate_text(model, tokenizer, TEXT, progress=False)
    assert result.tokens == len(ids) - 1
    assert result.bytes == scored_bytes
    assert result.nats == pytest.approx(nats, rel=1e-5)
    assert result.mean_loss == pytest.approx(nats / (len(ids) - 1), rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(nats / (len(ids) - 1)), rel=1e-5)
    assert result.bits_per_byte == pytest.approx(nats / math.log(2) / scored_bytes, rel=1e-5)


def test_gpt2_text_is_scored_after_end_of_text_and_counts_every_byte():
    """With GPT-2's tokenizer every token of the text is scored, after <|endoftext|>; reference: transformers."""
    transformers = pytest.importorskip("transformers")
    from gptlab.model.hf import from_hf_model

    torch.manual_seed(2)
    hf_model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_positions=128, n_embd=32, n_layer=2, n_head=4, initializer_range=0.2
        )
    ).eval()
    tokenizer = GPT2Tokenizer()
    text = "Tokens split characters: 東京 🦊 naïve."  # the fox is 4 bytes over several tokens
    ids = [tokenizer.eot_id, *tokenizer.encode(text)]
    with torch.no_grad():
        log_probs = torch.log_softmax(hf_model(torch.tensor([ids])).logits[0, :-1].double(), dim=-1)
    nats = -log_probs[torch.arange(len(ids) - 1), ids[1:]].sum().item()

    result = evaluate_text(from_hf_model(hf_model), tokenizer, text, progress=False)
    assert result.tokens == len(ids) - 1
    assert result.bytes == len(text.encode("utf-8"))
    assert result.nats == pytest.approx(nats, abs=1e-4)
    assert result.bits_per_byte == pytest.approx(
        nats / math.log(2) / len(text.encode("utf-8")), rel=1e-5
    )


def test_stride_equal_to_context_is_the_non_overlapping_computation(char_model):
    model, tokenizer = char_model
    ids = tokenizer.encode(TEXT)[: 1 + 10 * 16]  # 10 whole blocks of targets
    # Consecutive blocks as the training loop's validation loss reads them: x = t[i:i+16], y = t[i+1:i+17].
    nats = sum(
        nll_of_targets(model, ids[i : i + 16], ids[i + 1 : i + 17]) for i in range(0, 160, 16)
    )

    for batch_size in (1, 3):
        result = evaluate_text(
            model,
            tokenizer,
            TEXT,
            stride=16,
            batch_size=batch_size,
            max_tokens=160,
            progress=False,
        )
        assert result.tokens == 160
        assert result.nats == pytest.approx(nats, rel=1e-5)


def test_a_last_partial_block_is_read_with_a_full_context(char_model):
    """Non-overlapping blocks, then the few targets left over predicted within the last 16 tokens."""
    model, tokenizer = char_model
    ids = tokenizer.encode(TEXT)
    last = len(ids) - 1
    whole = last - last % 16
    assert last % 16 != 0
    nats = sum(
        nll_of_targets(model, ids[i : i + 16], ids[i + 1 : i + 17]) for i in range(0, whole, 16)
    )
    # The last window is the last 16 inputs; the leftover targets are predicted from within it.
    nats += sum(nll_of_next(model, ids[last - 16 : t], ids[t]) for t in range(whole + 1, last + 1))
    result = evaluate_text(model, tokenizer, TEXT, stride=16, batch_size=4, progress=False)
    assert result.tokens == last
    assert result.nats == pytest.approx(nats, rel=1e-5)


@pytest.mark.parametrize(
    "n_tokens,context,stride", [(100, 16, 5), (100, 16, 16), (100, 16, 1), (10, 16, 4), (2, 16, 3)]
)
def test_sliding_windows_score_every_token_exactly_once(n_tokens, context, stride):
    windows = sliding_windows(n_tokens, context, stride)
    scored = [t for w in windows for t in range(w.end - w.n_scored + 1, w.end + 1)]
    assert sorted(scored) == list(range(1, n_tokens))  # each of tokens 1 .. n-1 once, none twice
    assert len({w.end - w.start for w in windows}) == 1  # equal lengths: batches need no padding
    for w in windows:
        assert 0 <= w.start < w.end and w.end - w.start <= context
        # Each scored target t is predicted from tokens w.start .. t-1.
        first_scored = w.end - w.n_scored + 1
        assert first_scored - w.start >= min(first_scored, context - stride + 1)


def test_stride_one_gives_every_token_its_full_context(char_model):
    model, tokenizer = char_model
    text = TEXT[:60]
    ids = tokenizer.encode(text)
    # Token t predicted from the up to 16 tokens just before it, one forward each.
    nats = sum(nll_of_next(model, ids[max(0, t - 16) : t], ids[t]) for t in range(1, len(ids)))
    result = evaluate_text(model, tokenizer, text, stride=1, batch_size=7, progress=False)
    assert result.tokens == len(ids) - 1
    assert result.nats == pytest.approx(nats, rel=1e-5)


# ------------------------------------------------------------------------------------------
# Prepared splits


@pytest.fixture(scope="module")
def fineweb_prepared(tmp_path_factory, shared_data):
    """The first 20 real FineWeb-Edu documents with GPT-2's tokenizer: val = documents 0 and 10."""
    from gptlab.data.prepare import prepare_dataset

    path = shared_data / "fineweb_edu" / "sample.jsonl"
    out = tmp_path_factory.mktemp("prepared") / "fineweb"
    prepare_dataset(str(path), out=out, max_docs=20, workers=1, show_progress=False)
    documents = [
        json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()[:20]
    ]
    return out, [documents[0], documents[10]]


def test_prepared_split_counts_the_bytes_of_its_documents(fineweb_prepared):
    from gptlab.data.prepared_folder import read_meta

    folder, val_documents = fineweb_prepared
    tokenizer = GPT2Tokenizer()
    torch.manual_seed(3)
    model = GPT(ModelConfig(vocab_size=50257, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    result = evaluate_prepared(model, tokenizer, folder, "val", batch_size=8, progress=False)

    # Every token of the split is scored (after one leading end-of-text), and the bytes are those
    # of the two documents' text: the end-of-text after each document counts none.
    assert result.tokens == read_meta(folder)["splits"]["val"]["tokens"]
    assert result.bytes == sum(len(doc.encode("utf-8")) for doc in val_documents)
    # The same numbers as scoring the tokens directly.
    tokens = np.concatenate(
        [[tokenizer.eot_id], *(tokenizer.encode(d) + [tokenizer.eot_id] for d in val_documents)]
    )
    direct = evaluate_tokens(
        model, tokens, token_byte_lengths(tokenizer), batch_size=3, progress=False
    )
    assert result.nats == pytest.approx(direct.nats, rel=1e-6)


# ------------------------------------------------------------------------------------------
# Bad input, through the CLI


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["eval", "perplexity", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_text_json(gpt2_model_dir, tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    code, out, _ = run_cli(
        capsys, "--checkpoint", gpt2_model_dir, "--text", path, "--stride", 8, "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["bytes"] == len(TEXT.encode("utf-8")) and result["stride"] == 8
    assert result["perplexity"] == pytest.approx(math.exp(result["mean_loss"]))


def test_cli_rejects_data_from_another_tokenizer(gpt2_model_dir, tmp_path, capsys, shared_data):
    from gptlab.data.prepare import prepare_dataset

    folder = tmp_path / "shakespeare-char"
    text = tmp_path / "shakespeare.txt"
    text.write_text(
        (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:5000]
    )
    prepare_dataset(str(text), tokenizer="char", out=folder, workers=1, show_progress=False)
    code, _, err = run_cli(capsys, "--checkpoint", gpt2_model_dir, "--data", folder)
    assert code == 1
    assert err.count("\n") == 1 and "another tokenizer" in err


def test_cli_rejects_a_folder_that_is_not_prepared(gpt2_model_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "--checkpoint", gpt2_model_dir, "--data", tmp_path)
    assert code == 1
    assert err.count("\n") == 1 and "not a prepared dataset" in err


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--stride", 33, "stride must be between 1 and the model's block_size"),  # the library's
        ("--stride", 0, "--stride must be a positive number"),  # the CLI's own checks
        ("--batch-size", 0, "--batch-size must be a positive number"),
        ("--max-tokens", -1, "--max-tokens must be a positive number"),
    ],
)
def test_cli_rejects_bad_numbers(gpt2_model_dir, tmp_path, capsys, flag, value, message):
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    code, _, err = run_cli(capsys, "--checkpoint", gpt2_model_dir, "--text", path, flag, value)
    assert code == 1
    assert err.count("\n") == 1 and message in err
