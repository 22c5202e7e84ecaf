"""`repeats:SOURCE`: a source's text cut into spans that are each written twice, the data that grows
induction heads.

Induction heads (a previous-token head, then a head that attends to the token after an earlier
occurrence of the current one, and copies it) pay off only when text repeats itself. Natural text
does, but too rarely, and too ambiguously (a character recurs every few characters), for a small
model on a CPU to find them in minutes. This wrapper rewrites a document as records of
RECORD_CHARS characters, each a run of spans written twice in a row (`abc abc defgh defgh ...`,
without the spaces), cut at the record's end. Records alternate between two kinds:

- text records: consecutive spans of the document itself, so the whole text is still there, in
  order, every span of it twice: the model learns the language from the first copies;
- random records: spans of random characters of the document's own alphabet. Nothing but copying
  can predict their second copies, exactly the behaviour the induction detectors and the
  repeated-token loss measure (on random tokens too, which text records alone do not teach: a
  model trained on them only copies what it finds plausible as English).

Spans are MIN_SPAN..MAX_SPAN characters, drawn anew each time: with one fixed length a model learns
"copy the token SPAN positions back", which is not induction and fails on any other length.

Why records: with the character tokenizer one character is one token, so record k starts at
token k * RECORD_CHARS of the prepared stream, and a loader whose windows start at multiples of a
block size that is a multiple of RECORD_CHARS (data.loader_mode = "sequential") sees every window
begin with the first copy of a span. On a 2-core CPU that is what lets the heads form in
minutes: read through windows at random offsets (starting mid-span, next to second copies whose
first copy is cut off), the same spans delay the induction bump about threefold (BENCHMARKS.md,
"The `induction` preset"). Other tokenizers keep the repeats but not the
alignment. The spans are seeded by the document's position in the stream, so preparing twice
gives the same data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

RECORD_CHARS = 64  # characters per record; the preset's block size is a multiple of it
MIN_SPAN, MAX_SPAN = 8, 32  # characters per span (each written twice)
PREFIX = "repeats:"


class RepeatedSpans:
    """Wraps a source object (see data/sources.py) with the same interface."""

    def __init__(self, inner, seed: int = 0):
        self.inner = inner
        self.seed = seed
        self.single_text = inner.single_text
        self.stats = inner.stats
        self.slug = f"repeats-{inner.slug}"

    def documents(self) -> Iterator[str]:
        for index, text in enumerate(self.inner.documents()):
            yield with_repeated_spans(text, random.Random(self.seed * 1_000_003 + index))

    def known_documents(self) -> int | None:
        return self.inner.known_documents()

    def describe(self) -> dict:
        return {
            "kind": "repeats",
            "record_chars": RECORD_CHARS,
            "span_chars": [MIN_SPAN, MAX_SPAN],
            "records": "text and random, alternating",
            "seed": self.seed,
            "inner": self.inner.describe(),
        }


def with_repeated_spans(text: str, rng: random.Random) -> str:
    """text as records of RECORD_CHARS characters, alternately text and random (module docstring).

    Every character of text appears, in order, in the text records (a span cut off by a record's
    end starts the next text record again). The random spans are drawn from the text's own
    newline-free alphabet, so a character tokenizer built from the result has the vocabulary of
    the original text. Every record is RECORD_CHARS long (the last text record is filled up
    with random spans), so the records of the next document stay aligned too.
    """
    alphabet = sorted(set(text) - {"\n", "\r"})
    if not alphabet:
        return text
    records, position = [], 0
    while position < len(text):
        record, position = _text_record(text, position, rng)
        if len(record) < RECORD_CHARS:  # the text ran out
            record += _random_record(alphabet, rng)[: RECORD_CHARS - len(record)]
        records.append(record)
        records.append(_random_record(alphabet, rng))
    return "".join(records)


def _text_record(text: str, position: int, rng: random.Random) -> tuple[str, int]:
    """One text record from text[position:], and where the next one starts."""
    record = ""
    while len(record) < RECORD_CHARS and position < len(text):
        span = text[position : position + rng.randint(MIN_SPAN, MAX_SPAN)]
        if len(record) + len(span) > RECORD_CHARS:
            # The record ends inside this span's first copy: the part that fits is kept, and the
            # next record starts at the first character that did not fit, so nothing is lost.
            fits = RECORD_CHARS - len(record)
            return record + span[:fits], position + fits
        record += span + span
        position += len(span)
    return record[:RECORD_CHARS], position


def _random_record(alphabet: list[str], rng: random.Random) -> str:
    record = ""
    while len(record) < RECORD_CHARS:
        span = "".join(rng.choices(alphabet, k=rng.randint(MIN_SPAN, MAX_SPAN)))
        record += span + span
    return record[:RECORD_CHARS]
