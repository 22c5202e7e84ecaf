"""What the peer comparisons (peer_nanogpt.py, peer_nanochat.py) share: the same held-out articles,
the same bits-per-byte code, and a clock that stops a peer's training after the same time.

The split is gptlab's own (`data.val_fraction` 0.1: every tenth document is held out), so every
model, gptlab's and the peers', trains on the same 90% and is scored on the same held-out
articles, the first ~1 MB of them, each document scored separately from its first byte by
`gptlab.eval.bits_per_byte.score_documents`. A peer's model is wrapped, not converted: a
`ScoredModel` gives it the `config.block_size` / `config.vocab_size` and `(logits, loss)` call the
scorer expects, and a `ScoredTokenizer` gives its tokenizer `encode` / `decode_bytes` / `eot_id`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import torch

from gptlab.data.sources import iter_documents
from gptlab.data.splits import is_train_document
from gptlab.device import use_threads
from gptlab.eval.bits_per_byte import score_documents, take_bytes

HELD_OUT_BYTES = 1_000_000


def split_documents(corpus: str, val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """(training documents, held-out documents) exactly as `gptlab train` splits the corpus."""
    documents = list(iter_documents(corpus))
    fraction = Fraction(val_fraction).limit_denominator(1_000_000)
    is_train = is_train_document(np.arange(len(documents)), fraction)
    train = [d for d, t in zip(documents, is_train, strict=True) if t]
    held_out = [d for d, t in zip(documents, is_train, strict=True) if not t]
    return train, held_out


class ScoredModel(torch.nn.Module):
    """A peer's model seen through the interface gptlab's scorer uses."""

    def __init__(self, model: torch.nn.Module, block_size: int, vocab_size: int, logits_of):
        super().__init__()
        self.model = model
        self.config = SimpleNamespace(block_size=block_size, vocab_size=vocab_size)
        self.logits_of = logits_of  # (model, idx) -> logits (B, T, vocab)

    def forward(self, idx):
        return self.logits_of(self.model, idx), None


class ScoredTokenizer:
    """A tiktoken Encoding with a document-start token, as the scorer wants a tokenizer."""

    def __init__(self, encoding, eot_id: int | None, vocab_size: int):
        self.encoding, self.eot_id, self.vocab_size = encoding, eot_id, vocab_size

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode_bytes(self, ids) -> bytes:
        return b"".join(
            b"" if i == self.eot_id else self.encoding.decode_single_token_bytes(i)
            for i in ids
            if i < self.encoding.n_vocab
        )


def held_out_bits_per_byte(
    model, tokenizer, held_out: list[str], max_bytes: int = HELD_OUT_BYTES
) -> dict:
    """gptlab eval bpb's numbers for the first max_bytes of the held-out documents (with the
    thread count `gptlab eval` would pick on this machine)."""
    use_threads("auto")
    score = score_documents(
        model, tokenizer, take_bytes(held_out, max_bytes), total_bytes=max_bytes
    )
    return score.to_dict()


def run_for(command: list[str], seconds: float, cwd: str, env: dict, log_path: str) -> float:
    """Run a peer's training command; stop it (SIGINT, then SIGKILL) after `seconds` of wall time."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return time.perf_counter() - started
