"""`repeats:SOURCE`: a source's text with spans of it repeated, the data that grows induction heads.

Induction heads (a previous-token head, then a head that attends to the token after an earlier
occurrence of the current one, and copies it) pay off only when text repeats itself. Natural text
does, but rarely enough that a small model on a CPU needs hours to find them. This wrapper makes
repeats common without making the text artificial: every segment of SEGMENT_CHARS characters is
followed by a copy of a random span of that same segment (MIN_SPAN..MAX_SPAN characters), so the
model still learns the language between the copies. The choice of spans is seeded by the
document's position in the stream, so preparing twice gives the same data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

SEGMENT_CHARS = 32  # text between two repeats
MIN_SPAN, MAX_SPAN = 16, 32  # the length of each repeated span, in characters
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
            "segment_chars": SEGMENT_CHARS,
            "span_chars": [MIN_SPAN, MAX_SPAN],
            "seed": self.seed,
            "inner": self.inner.describe(),
        }


def with_repeated_spans(text: str, rng: random.Random) -> str:
    """text with, after every SEGMENT_CHARS characters, a copy of a random span of that segment."""
    pieces = []
    for start in range(0, len(text), SEGMENT_CHARS):
        segment = text[start : start + SEGMENT_CHARS]
        pieces.append(segment)
        if len(segment) > MIN_SPAN:
            length = rng.randint(MIN_SPAN, min(MAX_SPAN, len(segment)))
            begin = rng.randint(0, len(segment) - length)
            pieces.append(segment[begin : begin + length])
    return "".join(pieces)
