"""Which documents of a stream are held out: the one rule that prepare, the own-BPE trainer and
held-out evaluation share, so a tokenizer or a score never sees a document training did not.

With val_fraction = p/q, document i (counted from 0 in stream order) is a training document when
floor((i+1)(q-p)/q) > floor(i(q-p)/q): the ceil(N p/q) validation documents are spread evenly
through the stream (0, 10, 20, ... at 0.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np


def as_fraction(val_fraction: float | Fraction) -> Fraction:
    return Fraction(val_fraction).limit_denominator(1_000_000)


def is_train_document(indices: np.ndarray, val_fraction: Fraction) -> np.ndarray:
    """Which documents (by stream index) are training documents."""
    keep, whole = val_fraction.denominator - val_fraction.numerator, val_fraction.denominator
    return (indices + 1) * keep // whole > indices * keep // whole


def documents_of_split(
    documents: Iterable[str], val_fraction: float | Fraction, split: str
) -> Iterator[str]:
    """The documents of one split ("train" or "val") of a stream, in order."""
    fraction = as_fraction(val_fraction)
    want_train = split == "train"
    for index, document in enumerate(documents):
        if bool(is_train_document(np.array([index]), fraction)[0]) == want_train:
            yield document
