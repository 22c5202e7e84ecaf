"""`bpe:N` as a tokenizer: a byte-level BPE of N tokens trained on the corpus being prepared.

A recipe that uses its own tokenizer (`data.tokenizer = "bpe:8192"`, `gptlab prepare --tokenizer
bpe:8192`) needs no separate `gptlab tokenizer train` step: the first run trains the BPE on the
source's training documents (the ones its validation split leaves out, so held-out articles
inform neither the tokenizer nor the model) and keeps it in `$GPTLAB_HOME/tokenizers/`; a later
run on the same source (same files, sizes and modification times), with the same vocabulary size,
validation fraction and document budget, finds it there and reuses it. Either way it says which.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from gptlab.data.cache import gptlab_home
from gptlab.data.prepared_folder import settings_hash
from gptlab.data.splits import documents_of_split
from gptlab.errors import GptlabError
from gptlab.tokenizers.base import load_tokenizer, save_tokenizer
from gptlab.tokenizers.bpe import MIN_VOCAB_SIZE, train_bpe

PREFIX = "bpe:"


def is_own_bpe(spec: str) -> bool:
    return spec.startswith(PREFIX)


def own_bpe_vocab_size(spec: str) -> int:
    """N of "bpe:N", checked (so a bad spec fails before any work)."""
    size = spec.removeprefix(PREFIX)
    if not size.isdigit() or int(size) < MIN_VOCAB_SIZE:
        raise GptlabError(
            f"tokenizer {spec!r}: bpe:N trains an N-token BPE on the corpus; N must be a whole "
            f"number >= {MIN_VOCAB_SIZE}, e.g. bpe:8192"
        )
    return int(size)


def own_bpe_path(
    spec: str,
    src,
    *,
    val_fraction: float,
    max_docs: int | None,
    log: Callable[[str], None],
    show_progress: bool = True,
) -> Path:
    """The tokenizer JSON for `spec` ("bpe:N") on source `src`: trained now, or the one from before."""
    vocab_size = own_bpe_vocab_size(spec)
    fraction = Fraction(val_fraction).limit_denominator(1_000_000)
    key = settings_hash(
        {
            "source": src.describe(),
            "vocab_size": vocab_size,
            "val_fraction": str(fraction),
            "max_docs": max_docs,
            "documents": "single text" if src.single_text else "training documents",
        }
    )
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{src.slug}-bpe{vocab_size}")
    path = gptlab_home() / "tokenizers" / f"{name}-{key[:12]}.json"
    if path.is_file():
        log(f"reusing the {vocab_size:,}-token BPE trained before on this corpus: {path}")
        load_tokenizer(str(path))  # a damaged file fails here, with its own message
        return path
    documents = src.documents()
    if max_docs is not None:
        documents = (d for _, d in zip(range(max_docs), documents, strict=False))
    # One text (a .txt file) is split by prepare at a token count the tokenizer decides, so the
    # whole text, its validation tail included, trains the BPE.
    if not src.single_text:
        documents = documents_of_split(documents, fraction, "train")
    described = src.describe()
    log(
        f"training a {vocab_size:,}-token BPE on the training documents of "
        f"{described.get('spec', src.slug)} (once: later runs on this corpus reuse it)"
    )
    started = time.perf_counter()
    tokenizer = train_bpe(documents, vocab_size, progress=show_progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tokenizer, path)
    log(f"trained it in {time.perf_counter() - started:.0f} s; saved for later runs: {path}")
    return path
