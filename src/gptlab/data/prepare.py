"""Prepare a dataset: stream a source's documents, tokenize them in parallel, write token shards.

Prepared folders (see gptlab.data.prepared_folder for their layout) live in
`$GPTLAB_HOME/prepared/<source>-<tokenizer>-<settings hash>` unless `out` is given; preparing
again with the same settings finds the folder and does nothing. The settings are the source (for
local files: their paths, sizes and modification times), the tokenizer, the budgets, the
validation fraction and the shard size; the number of workers does not change the result.

Splits are deterministic:
- several documents: whole documents go to one split or the other (gptlab.data.splits, the rule
  the own-BPE trainer and `gptlab eval bpb --val-fraction` share). With val_fraction = p/q,
  document i is a training document when floor((i+1)(q-p)/q) > floor(i(q-p)/q): the
  ceil(N p/q) validation documents are spread evenly through the stream (0, 10, 20, ... at 0.1).
- one text (tinyshakespeare, a single .txt file): the last val_fraction of its tokens is the
  validation split (train = the first floor(n (1 - val_fraction)) tokens, as nanoGPT does).
- a document of LARGE_DOCUMENT_TOKENS or more is split by its tail like one text: its first
  floor(n (1 - val_fraction)) tokens train, the rest validate. Whole-document routing would send
  it entirely to one split: a corpus of one 50 MB document was all validation (train 1,368
  tokens, val 10.9M). Such a document counts as a document of each split. A split whose share
  of the tokens still ends far from val_fraction (a few big documents under the threshold) is
  reported with a warning.

Every document ends with the tokenizer's end-of-text token when it has one (GPT-2, trained BPE);
a character tokenizer has none, so documents are simply concatenated.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from gptlab import __version__
from gptlab.data.cache import prepared_root
from gptlab.data.local_files import TextStats
from gptlab.data.own_bpe import is_own_bpe, own_bpe_path, own_bpe_vocab_size
from gptlab.data.parallel import (
    batch_documents,
    encode_in_order,
    max_workers,
    split_at_token_boundaries,
)
from gptlab.data.prepared_folder import (
    DEFAULT_SHARD_TOKENS,
    DEFAULT_VAL_FRACTION,
    FORMAT_VERSION,
    PROGRESS_FILE,
    building_folder,
    is_prepared,
    settings_hash,
)
from gptlab.data.progress import PrepareProgress
from gptlab.data.shards import ShardWriter, token_dtype
from gptlab.data.sources import resolve_source
from gptlab.data.splits import is_train_document
from gptlab.errors import GptlabError, require
from gptlab.fileio import atomic_write_text
from gptlab.tokenizers.base import (
    CharTokenizer,
    Tokenizer,
    get_tokenizer,
    load_tokenizer,
    save_tokenizer,
)

SPLITS = ("train", "val")
_COPY_CHUNK_TOKENS = 1 << 24
# How often a document build records its progress (a kill loses at most this much work).
PROGRESS_EVERY_S = 2.0


def prepare_dataset(
    source: str,
    *,
    tokenizer: str = "gpt2",
    out: str | Path | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    workers: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    max_docs: int | None = None,
    max_tokens: int | None = None,
    text_column: str = "text",
    hf_config: str | None = None,
    show_progress: bool = True,
) -> Path:
    """Tokenize `source` into a prepared folder and return its path (see the module docstring).

    tokenizer: "gpt2", "char" (a character vocabulary built from the corpus itself, which costs
        one extra pass over the documents: a hub stream is streamed twice), "bpe:N" (an N-token
        BPE trained on the corpus's training documents first, or reused: gptlab.data.own_bpe)
        or a tokenizer JSON.
    max_docs / max_tokens: budgets; the stream stops there (the last document is cut so that
        exactly max_tokens tokens are kept).
    workers: tokenizer processes (default: one per available CPU core).
    """
    # Training needs a validation split (data.val_fraction is in (0, 1) there too).
    require(0 < val_fraction < 1, f"val_fraction must be in (0, 1), not {val_fraction}")
    require(shard_tokens > 0, f"shard_tokens must be positive, not {shard_tokens}")
    require(max_docs is None or max_docs > 0, f"max_docs must be positive, not {max_docs}")
    require(max_tokens is None or max_tokens > 0, f"max_tokens must be positive, not {max_tokens}")
    require(workers is None or workers > 0, f"workers must be positive, not {workers}")
    require(
        workers is None or workers <= max_workers(),
        f"workers {workers} is more than this machine can use: at most {max_workers()} "
        "(4 per CPU core, within the open-file limit `ulimit -n`)",
    )
    log = _logger(show_progress)

    src = resolve_source(
        source, text_column=text_column, hf_config=hf_config, show_progress=show_progress
    )
    if is_own_bpe(tokenizer):  # "bpe:N": train one on this corpus, or reuse the one from before
        own_bpe_vocab_size(tokenizer)  # a bad N fails before the source is read
        fixed_tokenizer = get_tokenizer(
            str(
                own_bpe_path(
                    tokenizer,
                    src,
                    val_fraction=val_fraction,
                    max_docs=max_docs,
                    log=log,
                    show_progress=show_progress,
                )
            )
        )
        src.stats = TextStats()  # a pass that trained the BPE counted them; prepare counts again
    else:
        fixed_tokenizer = None if tokenizer == "char" else get_tokenizer(tokenizer)
    settings = {
        "format": FORMAT_VERSION,
        "source": src.describe(),
        "tokenizer": _tokenizer_identity(fixed_tokenizer),
        "budget": {"max_docs": max_docs, "max_tokens": max_tokens},
        "val_fraction": val_fraction,
        "shard_tokens": shard_tokens,
        "split_documents_from_tokens": LARGE_DOCUMENT_TOKENS,
    }
    key = settings_hash(settings)
    if out is None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{src.slug}-{settings['tokenizer']['type']}")
        folder = prepared_root() / f"{name}-{key[:12]}"
    else:
        folder = Path(out).expanduser()
    if is_prepared(folder, key):
        log(f"already prepared with the same settings: {folder}")
        return folder

    started = time.time()
    try:
        with building_folder(folder, key) as building:
            job = _Job(src, building, settings, workers or _available_cores(), show_progress, log)
            tokenizer_used = job.run(fixed_tokenizer)
            meta = {
                **settings,
                "gptlab_version": _version(),
                "settings_hash": key,
                "tokenizer": {**settings["tokenizer"], "spec": tokenizer},
                "vocab_size": tokenizer_used.vocab_size,
                "eot_id": tokenizer_used.eot_id,
                "dtype": job.dtype.name,
                "split_by": "tail" if src.single_text else "documents",
                "splits": job.split_summary(),
                "invalid_utf8_replaced": src.stats.invalid_utf8,
                "empty_documents_skipped": src.stats.empty_documents,
                "seconds": round(time.time() - started, 3),
            }
            # Plain writes are enough inside the building folder: only its rename publishes it.
            (building / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise GptlabError(
            f"could not prepare {folder}: {exc.strerror or exc}{where}; nothing was kept"
        ) from None
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    log(
        f"prepared {folder}: train {train['tokens']:,} tokens ({train['documents']:,} docs), "
        f"val {val['tokens']:,} tokens ({val['documents']:,} docs)"
    )
    return folder


def _tokenizer_identity(tokenizer: Tokenizer | None) -> dict:
    """What identifies a tokenizer in the settings: its type and a hash of its full description.

    (A path would not do: the same file can move, and a retrained file can keep its path.)
    A character vocabulary comes from the corpus, so "char" alone identifies it.
    """
    if tokenizer is None:
        return {"type": "char"}
    description = json.dumps(tokenizer.to_dict(), sort_keys=True)
    return {
        "type": tokenizer.to_dict().get("type", tokenizer.name),
        "hash": settings_hash({"t": description}),
    }


class _Job:
    """One run of prepare: tokenizes the source into the shards of the building folder."""

    def __init__(self, src, building: Path, settings: dict, workers: int, show_progress: bool, log):
        self.src, self.building, self.settings = src, building, settings
        self.settings_hash = settings_hash(settings)
        self.workers, self.show_progress, self.log = workers, show_progress, log
        self.max_docs = settings["budget"]["max_docs"]
        self.max_tokens = settings["budget"]["max_tokens"]
        self.val_fraction = Fraction(settings["val_fraction"]).limit_denominator(1_000_000)

    def run(self, fixed_tokenizer: Tokenizer | None) -> Tokenizer:
        """Write both splits' shards; return the tokenizer used (built here for "char").

        A building folder with a progress record is a killed build of the same settings
        (gptlab.data.prepared_folder claimed it): its writers carry on where the record says.
        """
        self.progress = _read_progress(self.building)
        tokenizer_file = self.building / "tokenizer.json"
        if fixed_tokenizer is not None:
            self.tokenizer = fixed_tokenizer
        elif self.progress is not None and tokenizer_file.is_file():
            self.tokenizer = load_tokenizer(tokenizer_file)  # the killed build's vocabulary
        else:
            self.log("building the character vocabulary (a first pass over the documents)")
            batches = batch_documents(self._documents())
            self.tokenizer = CharTokenizer(_corpus_characters(batches, self.max_tokens))
            self.src.stats = TextStats()  # the second pass counts again
        save_tokenizer(self.tokenizer, tokenizer_file)  # before any shard: a resume reads it
        self.dtype = token_dtype(self.tokenizer.vocab_size)
        shard_tokens = self.settings["shard_tokens"]
        self.writers = {
            split: ShardWriter(self.building, split, self.dtype, shard_tokens) for split in SPLITS
        }
        try:
            if self.src.single_text:
                self._write_single_text()
            else:
                self._write_documents()
            self.shards = {split: writer.close() for split, writer in self.writers.items()}
        finally:
            for writer in self.writers.values():
                writer.abort()
        (self.building / PROGRESS_FILE).unlink(missing_ok=True)
        self._check_split_sizes()
        if self.src.stats.invalid_utf8:
            self.log(
                f"replaced {self.src.stats.invalid_utf8:,} invalid UTF-8 byte sequence(s) with U+FFFD"
            )
        return self.tokenizer

    def split_summary(self) -> dict:
        return {
            split: {
                "documents": writer.documents,
                "tokens": writer.tokens,
                "shards": self.shards[split],
            }
            for split, writer in self.writers.items()
        }

    def _documents(self, skip: int = 0) -> Iterator[str]:
        return itertools.islice(self.src.documents(), skip, self.max_docs)

    def _encode(self, batches) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        append_eot = self.tokenizer.eot_id is not None and not self.src.single_text
        return encode_in_order(
            batches, self.tokenizer, self.dtype, workers=self.workers, append_eot=append_eot
        )

    def _write_documents(self) -> None:
        """Tokenize the stream of documents and route whole documents to their split, in order."""
        first_doc, written = 0, 0
        if self.progress is not None:  # a killed build's: its documents are read, not tokenized
            first_doc, written = self.progress["documents_read"], self.progress["tokens_written"]
            for split, writer in self.writers.items():
                writer.resume(self.progress["splits"][split])
            self.log(
                f"carrying on a killed prepare after {first_doc:,} documents ({written:,} tokens)"
            )
        # The bar's total: the budget, or the source's count when that is smaller (or the only one).
        known = [n for n in (self.max_docs, self.src.known_documents()) if n is not None]
        total_docs = min(known, default=None)
        progress = PrepareProgress(
            total_docs=total_docs,
            total_tokens=self.max_tokens,
            enabled=self.show_progress,
            done_docs=first_doc,
            done_tokens=written,
        )
        encoded = self._encode(batch_documents(self._documents(skip=first_doc)))
        recorded = time.monotonic()
        finished_recorded = sum(len(writer.shards) for writer in self.writers.values())
        with progress, contextlib.closing(encoded):
            for tokens, lengths in encoded:  # tokens (sum(lengths),), lengths (docs in batch,)
                budget_reached = (
                    self.max_tokens is not None and written + tokens.size >= self.max_tokens
                )
                if budget_reached:
                    tokens, lengths = _cut_to(tokens, lengths, self.max_tokens - written)
                is_train = is_train_document(first_doc + np.arange(len(lengths)), self.val_fraction)
                offsets = np.concatenate([[0], np.cumsum(lengths)])
                # A large document is a run of its own (route -1), split by its tail; otherwise
                # one write per run of consecutive documents of the same split.
                route = np.where(lengths >= LARGE_DOCUMENT_TOKENS, -1, is_train.astype(int))
                breaks = np.flatnonzero((np.diff(route) != 0) | (route[1:] == -1)) + 1
                run_starts = np.concatenate([[0], breaks])
                run_ends = np.append(run_starts[1:], len(lengths))
                for start, end in zip(run_starts, run_ends, strict=True):
                    if route[start] == -1:
                        self._write_split_by_tail(tokens[offsets[start] : offsets[end]])
                        continue
                    writer = self.writers["train" if route[start] else "val"]
                    writer.write(tokens[offsets[start] : offsets[end]])
                    writer.documents += int(end - start)
                first_doc += len(lengths)
                written += tokens.size
                progress.update(len(lengths), tokens.size)
                if budget_reached:
                    return
                # A record every PROGRESS_EVERY_S, and one as soon as a shard is finished: a kill
                # then never costs a finished shard, however fast the machine tokenizes.
                finished = sum(len(writer.shards) for writer in self.writers.values())
                if finished > finished_recorded or time.monotonic() - recorded >= PROGRESS_EVERY_S:
                    self._record_progress(first_doc, written)
                    recorded, finished_recorded = time.monotonic(), finished

    def _record_progress(self, documents_read: int, tokens_written: int) -> None:
        """How far the build got, for a build that carries it on after a kill. The shards are
        flushed first, so the record never claims more than the files hold."""
        record = {
            "settings_hash": self.settings_hash,
            "documents_read": documents_read,
            "tokens_written": tokens_written,
            "splits": {split: writer.state() for split, writer in self.writers.items()},
        }
        atomic_write_text(self.building / PROGRESS_FILE, json.dumps(record))

    def _write_split_by_tail(self, document: np.ndarray) -> None:
        """One large document's first (1 - val_fraction) of tokens to train, the rest to val."""
        keep = self.val_fraction.denominator - self.val_fraction.numerator
        n_train = document.size * keep // self.val_fraction.denominator
        for split, part in (("train", document[:n_train]), ("val", document[n_train:])):
            self.writers[split].write(part)
            self.writers[split].documents += 1

    def _write_single_text(self) -> None:
        """Tokenize one text and split it by its tail: the last val_fraction of tokens is validation.

        The text is cut into pieces that tokenize exactly like the whole (so they can go to
        several workers). The split point depends on the total token count, known only at the
        end, so the tokens go to a scratch file first and are then copied into the two splits.
        """
        text = next(self._documents(), None)
        if text is None:
            raise GptlabError("the source gave no text: there is nothing to prepare")
        piece_sizes: deque[int] = (
            deque()
        )  # characters of the pieces in flight, for the progress bar

        def pieces() -> Iterator[list[str]]:
            for piece in split_at_token_boundaries(text):
                piece_sizes.append(len(piece))
                yield [piece]

        scratch = ShardWriter(self.building, "scratch", self.dtype, shard_tokens=2**62)
        encoded = self._encode(pieces())
        with (
            PrepareProgress(total_chars=len(text), enabled=self.show_progress) as progress,
            contextlib.closing(encoded),
        ):
            for tokens, _ in encoded:
                scratch.write(tokens)
                progress.update(0, tokens.size, chars=piece_sizes.popleft())
                if self.max_tokens is not None and scratch.tokens >= self.max_tokens:
                    break
            if self.tokenizer.eot_id is not None:
                scratch.write(np.array([self.tokenizer.eot_id], dtype=self.dtype))
            progress.update(1, 0)
        scratch_file = self.building / scratch.close()[0]["file"]
        all_tokens = np.memmap(scratch_file, dtype=self.dtype, mode="r")
        total = (
            all_tokens.size if self.max_tokens is None else min(all_tokens.size, self.max_tokens)
        )
        keep = self.val_fraction.denominator - self.val_fraction.numerator
        n_train = total * keep // self.val_fraction.denominator
        for split, start, end in (("train", 0, n_train), ("val", n_train, total)):
            for chunk in range(start, end, _COPY_CHUNK_TOKENS):
                self.writers[split].write(all_tokens[chunk : min(end, chunk + _COPY_CHUNK_TOKENS)])
            self.writers[split].documents = int(end > start)
        del all_tokens
        scratch_file.unlink()

    def _check_split_sizes(self) -> None:
        train, val = self.writers["train"], self.writers["val"]
        if train.tokens == 0 and val.tokens == 0:
            raise GptlabError("the source gave no text: there is nothing to prepare")
        if train.tokens == 0 or (self.val_fraction > 0 and val.tokens == 0):
            raise GptlabError(
                f"the corpus is too short to split: {train.documents} train / {val.documents} val "
                f"documents, {train.tokens} / {val.tokens} tokens; use more data (or a larger "
                "budget) or another val_fraction"
            )
        share = val.tokens / (train.tokens + val.tokens)
        wanted = float(self.val_fraction)
        if not wanted / 3 <= share <= min(0.5, 3 * wanted):
            print(
                f"gptlab prepare: warning: validation holds {share:.1%} of the tokens, not the {wanted:.0%} asked: "
                f"whole documents go to one split, and these {train.documents + val.documents:,} "
                "are few or uneven (documents over "
                f"{LARGE_DOCUMENT_TOKENS:,} tokens are split inside); use more, smaller documents",
                file=sys.stderr,
            )


def _corpus_characters(batches: Iterator[list[str]], max_tokens: int | None) -> list[str]:
    """The sorted distinct characters of the documents, up to the batch that reaches max_tokens.

    Whole batches are read, the same batches the tokenizing pass will encode, so every text
    that pass encodes (including the part of a batch cut off by the budget) has its characters.
    """
    chars: set[str] = set()
    seen = 0
    for batch in batches:
        for doc in batch:
            chars.update(doc)
            seen += len(doc)
        if max_tokens is not None and seen >= max_tokens:
            break
    if not chars:
        raise GptlabError("the source gave no text: there is nothing to prepare")
    return sorted(chars)


# Documents this long are split by their tail (see the module docstring): a book or a dump, large
# enough that sending it whole to one split would unbalance the splits of all but huge corpora.
LARGE_DOCUMENT_TOKENS = 100_000


def _cut_to(tokens: np.ndarray, lengths: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `keep` tokens of a batch, and the lengths of the documents they come from."""
    ends = np.cumsum(lengths)
    last = int(np.searchsorted(ends, keep))  # the document holding the last kept token
    lengths = lengths[: last + 1].copy()
    lengths[-1] -= ends[last] - keep
    return tokens[:keep], lengths


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _version() -> str:
    return __version__


def _logger(enabled: bool):
    def log(message: str) -> None:
        if enabled:
            print(f"gptlab prepare: {message}", file=sys.stderr)

    return log


def _read_progress(building: Path) -> dict | None:
    """The progress record of a killed build this one carries on, or None for a fresh build."""
    path = building / PROGRESS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
