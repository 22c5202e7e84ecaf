"""`repeats:SOURCE`: a source's text with repeated spans in it, the data that grows induction heads.

Induction heads (a previous-token head, then a head that attends to the token after an earlier
occurrence of the current one, and copies it) pay off only when text repeats itself. Natural text
does, but too rarely, and too ambiguously (a character recurs every few characters), for a small
model on a CPU to find them in minutes. This wrapper keeps the text and, after every
SEGMENT_CHARS characters of it, writes a span of random characters drawn from the
document's own alphabet, twice in a row (MIN_SPAN..MAX_SPAN characters long). Nothing but copying can predict the second copy, exactly
the behaviour the induction detectors and the repeated-token loss measure; the language between
the spans is still learned as usual. The spans are seeded by the document's position in the
stream, so preparing twice gives the same data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

SEGMENT_CHARS = 16  # original text between two repeated spans
# Random characters per span (written twice), drawn anew for each span: with one fixed length a
# model learns "copy the token SPAN positions back", which is not induction and fails on any other
# length; a varying length leaves content-based look-up (induction) as the only way to copy.
MIN_SPAN, MAX_SPAN = 8, 32
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
    """text with a random span, written twice, after every SEGMENT_CHARS characters.

    The span's characters come from the text's own (newline-free) alphabet, so a character
    tokenizer built from the result has the vocabulary of the original text."""
    alphabet = sorted(set(text) - {"\n", "\r"})
    if not alphabet:
        return text
    pieces = []
    for start in range(0, len(text), SEGMENT_CHARS):
        pieces.append(text[start : start + SEGMENT_CHARS])
        span = "".join(rng.choices(alphabet, k=rng.randint(MIN_SPAN, MAX_SPAN)))
        pieces += [span, span]
    return "".join(pieces)
