"""Bits per byte of a model on a corpus of documents: one scale for every tokenizer.

Loss per token depends on how much text a token holds (a GPT-2 token is ~4.5 bytes of English, a
character ~1), so a character model and a BPE model cannot be compared by loss or perplexity.
Bits per byte can: the total negative log-likelihood of the text, in bits, over its UTF-8 bytes.

How a corpus is scored, exactly:

- Documents are scored separately. Each is tokenized on its own and no window ever reaches back
  into another document, so the number does not depend on the order of the documents or on what
  happened to come before one.
- A document longer than the model's context is scored with the sliding window of
  `gptlab.eval.perplexity.sliding_windows`: windows of `block_size` tokens, each moved on by
  `stride` tokens (default here: half the context), so every token after the first window is
  predicted from at least half a context; each token is predicted exactly once.
- The first token. A tokenizer with an end-of-text token (GPT-2, a trained BPE) gets it placed
  before the document, as it saw at every document start in training: then every token of the
  document is predicted, and every byte of the document counts. A tokenizer without one (char)
  cannot predict its first token from nothing: that token is context only, and its bytes are
  left out of the byte count as its loss is left out of the loss (so a one-character document
  scores nothing and is skipped). Bytes are the UTF-8 bytes each predicted token adds
  (`token_byte_lengths`); an end-of-text token predicted inside the text adds none.

Hence bits_per_byte = (sum of -ln p over predicted tokens) / ln 2 / (their bytes). For a
character model on ASCII text this is mean loss / ln 2 * tokens / bytes = mean loss / ln 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tqdm.auto import tqdm

from gptlab.data.sources import iter_documents
from gptlab.data.splits import documents_of_split
from gptlab.errors import GptlabError, require
from gptlab.eval.perplexity import (
    PerplexityResult,
    evaluate_tokens,
    text_tokens,
    token_byte_lengths,
)


@dataclass(frozen=True)
class CorpusScore(PerplexityResult):
    """The summed score of a set of documents, each scored on its own: the perplexity result's
    tokens, nats and bytes over all of them, and how many there were."""

    documents: int = 0  # documents scored
    skipped: int = 0  # documents too short to predict anything (one token without end-of-text)

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens

    def to_dict(self) -> dict:
        return {
            "documents": self.documents,
            "skipped": self.skipped,
            **super().to_dict(),
            "bytes_per_token": self.bytes_per_token,
        }


def held_out_documents(documents: Iterable[str], val_fraction: float) -> Iterator[str]:
    """The documents `gptlab prepare` (and so `gptlab train`) puts in the validation split at
    `val_fraction`: a run trained on the same source never saw them."""
    require(0 < val_fraction < 1, f"val_fraction must be in (0, 1), not {val_fraction}")
    return documents_of_split(documents, val_fraction, "val")


def take_bytes(documents: Iterable[str], max_bytes: int | None) -> Iterator[str]:
    """Whole documents until their UTF-8 bytes reach max_bytes (the one crossing it included)."""
    total = 0
    for document in documents:
        if max_bytes is not None and total >= max_bytes:
            return
        total += len(document.encode("utf-8"))
        yield document


def score_documents(
    model,
    tokenizer,
    documents: Iterable[str],
    *,
    stride: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
    total_bytes: int | None = None,
) -> CorpusScore:
    """Bits per byte of `documents`, each scored on its own (see the module docstring).

    stride: tokens each window moves on (default: half the model's context, at least 1).
    total_bytes: the corpus size, if known, for the progress bar's ETA.
    """
    context = model.config.block_size
    stride = max(context // 2, 1) if stride is None else stride
    byte_lengths = token_byte_lengths(tokenizer)
    n_documents = skipped = tokens = n_bytes = 0
    nats = 0.0
    bar = tqdm(
        total=total_bytes, unit="B", unit_scale=True, desc="bits per byte", disable=not progress
    )
    try:
        for document in documents:
            ids = text_tokens(tokenizer, document)
            bar.update(len(document.encode("utf-8")))
            if len(ids) < 2:
                skipped += 1
                continue
            result = evaluate_tokens(
                model, ids, byte_lengths, stride=stride, batch_size=batch_size, progress=False
            )
            n_documents += 1
            tokens += result.tokens
            nats += result.nats
            n_bytes += result.bytes
            bar.set_postfix(bpb=f"{nats / math.log(2) / max(n_bytes, 1):.4f}")
    finally:
        bar.close()
    if n_documents == 0 or n_bytes == 0:
        raise GptlabError(
            "no document had anything to score (each needs two tokens, or one after end-of-text): "
            "point it at text with some length"
        )
    return CorpusScore(
        tokens=tokens,
        nats=nats,
        bytes=n_bytes,
        context=context,
        stride=stride,
        documents=n_documents,
        skipped=skipped,
    )


def score_file(
    model,
    tokenizer,
    path: str,
    *,
    text_column: str = "text",
    val_fraction: float | None = None,
    max_bytes: int | None = None,
    **kwargs,
) -> CorpusScore:
    """Bits per byte of the documents of a file (.txt: one document; .jsonl: one per line; any
    source `gptlab prepare` reads). val_fraction: only the documents training held out at that
    fraction. max_bytes: stop after the document that reaches this many bytes."""
    require(max_bytes is None or max_bytes >= 1, f"--max-bytes must be at least 1, got {max_bytes}")
    documents: Iterable[str] = iter_documents(path, text_column=text_column)
    if val_fraction is not None:
        documents = held_out_documents(documents, val_fraction)
    return score_documents(
        model, tokenizer, take_bytes(documents, max_bytes), total_bytes=max_bytes, **kwargs
    )
