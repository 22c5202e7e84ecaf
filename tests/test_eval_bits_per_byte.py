"""Bits per byte of a corpus: hand computations, tokenizer invariances, held-out documents, CLI."""

import json
import math
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptlab.cli import main
from gptlab.data.splits import is_train_document
from gptlab.eval.bits_per_byte import held_out_documents, score_documents, take_bytes
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer, GPT2Tokenizer

DOCUMENTS = [
    "The quick brown fox jumps over the lazy dog. " * 5,
    "Größe, café, naïve: ünïcödé bytes count twice.",
    "Paris is the capital of France.\nIt lies on the Seine.",
]


class UniformModel(torch.nn.Module):
    """Logits all equal: every prediction costs exactly ln(vocab_size) nats, whatever the text."""

    def __init__(self, vocab_size: int, block_size: int):
        super().__init__()
        self.config = SimpleNamespace(vocab_size=vocab_size, block_size=block_size)
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, idx):
        return torch.zeros(*idx.shape, self.config.vocab_size) + self.anchor, None


def test_known_per_token_losses_give_bits_per_byte_by_hand():
    """GPT-2 tokens after <|endoftext|>: every token predicted at log2(50257) bits, every byte counted."""
    tokenizer = GPT2Tokenizer()
    model = UniformModel(tokenizer.vocab_size, block_size=8)  # several windows per document
    score = score_documents(model, tokenizer, DOCUMENTS, progress=False)
    n_tokens = sum(len(tokenizer.encode(d)) for d in DOCUMENTS)  # each one predicted once
    n_bytes = sum(len(d.encode("utf-8")) for d in DOCUMENTS)
    assert (score.documents, score.tokens, score.bytes, score.stride) == (3, n_tokens, n_bytes, 4)
    assert score.bits_per_byte == pytest.approx(
        n_tokens * math.log2(50257) / n_bytes, rel=1e-6
    )  # float32 log-softmax


def test_documents_are_scored_separately_from_a_fresh_end_of_text():
    """A real model, each document shorter than the context: one forward pass per document."""
    tokenizer = GPT2Tokenizer()
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50257, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    nats = 0.0
    for document in DOCUMENTS:
        ids = [tokenizer.eot_id, *tokenizer.encode(document)]
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids[:-1]]))
        nats += F.cross_entropy(logits[0].double(), torch.tensor(ids[1:]), reduction="sum").item()
    n_bytes = sum(len(d.encode("utf-8")) for d in DOCUMENTS)
    score = score_documents(model, tokenizer, DOCUMENTS, progress=False)
    assert score.nats == pytest.approx(nats, rel=1e-5)
    assert score.bits_per_byte == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)


def test_char_model_is_loss_over_ln2_times_tokens_over_bytes_and_drops_its_first_character():
    text = "".join(DOCUMENTS)
    tokenizer = CharTokenizer.from_text(text)
    torch.manual_seed(1)
    model = GPT(
        ModelConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    )
    score = score_documents(model, tokenizer, [*DOCUMENTS, "x"], progress=False)
    # No end-of-text: each document's first character is context, its bytes not counted.
    assert score.skipped == 1  # "x" alone has nothing to predict
    assert score.tokens == sum(len(d) - 1 for d in DOCUMENTS)
    assert score.bytes == sum(len(d[1:].encode("utf-8")) for d in DOCUMENTS)
    expected = score.mean_loss / math.log(2) * score.tokens / score.bytes
    assert score.bits_per_byte == pytest.approx(expected, rel=1e-12)
    ascii_only = score_documents(model, tokenizer, [DOCUMENTS[0]], progress=False)
    assert ascii_only.bits_per_byte == pytest.approx(ascii_only.mean_loss / math.log(2))


def test_held_out_documents_are_the_validation_split_of_prepare():
    documents = [f"document {i}" for i in range(40)]
    held = list(held_out_documents(documents, 0.1))
    assert held == [f"document {i}" for i in (0, 10, 20, 30)]
    train = is_train_document(np.arange(40), Fraction(1, 10))
    assert held == [d for d, t in zip(documents, train, strict=True) if not t]


def test_take_bytes_keeps_whole_documents():
    assert list(take_bytes(["aaa", "bb", "c"], 4)) == ["aaa", "bb"]
    assert list(take_bytes(["aaa", "bb", "c"], None)) == ["aaa", "bb", "c"]


def run_bpb(capsys, *args) -> tuple[int, str, str]:
    code = main(["eval", "bpb", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_scores_a_jsonl_file_and_matches_the_library(gpt2_model_dir, tmp_path, capsys):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCUMENTS), encoding="utf-8")
    code, out, _ = run_bpb(capsys, "--checkpoint", gpt2_model_dir, path, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["documents"] == 3 and result["stride"] == 16
    assert result["bytes"] == sum(len(d.encode("utf-8")) for d in DOCUMENTS)
    code, out, _ = run_bpb(capsys, "--checkpoint", gpt2_model_dir, path, "--json", "--max-bytes", 1)
    assert json.loads(out)["documents"] == 1


@pytest.mark.parametrize(
    "args,named",
    [
        (["missing.jsonl"], "missing.jsonl"),
        (["--stride", "0", "x.txt"], "--stride"),
        (["--val-fraction", "1.5", "x.txt"], "--val-fraction"),
    ],
)
def test_cli_bad_input_is_one_line(gpt2_model_dir, capsys, args, named):
    code, _, err = run_bpb(capsys, "--checkpoint", gpt2_model_dir, *args)
    assert code == 1
    assert err.count("\n") == 1 and named in err
