"""Tokenize batches of documents in worker processes, yielding the results in input order.

The main process reads documents and writes shards; the workers only tokenize. Documents travel
in batches of about a megabyte of text, so the cost of sending them to a worker and the token
array back is small next to the tokenization itself. At most a few batches per worker are in
flight at any time, so memory stays bounded however long the stream is (unlike Pool.imap, which
reads its whole input ahead).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gptlab.tokenizers.base import Tokenizer, tokenizer_from_dict

BATCH_CHARS = 1 << 20  # about 1 MB of text per batch sent to a worker
BATCHES_IN_FLIGHT_PER_WORKER = 2


# Each worker costs the parent a few file descriptors (its process sentinel, its share of the
# pipes); past the limit, starting the pool fails with "Too many open files".
FDS_PER_WORKER = 4
FDS_KEPT_FREE = 64  # for the shards, the source files and the interpreter's own


def max_workers() -> int:
    """The most tokenizer processes worth starting: 4 per core (more only take turns), and no
    more than the open-file limit (ulimit -n) leaves room for."""
    cores = os.cpu_count() or 1
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        soft = -1  # no limit to read (RLIM_INFINITY is -1 too)
    by_files = (soft - FDS_KEPT_FREE) // FDS_PER_WORKER if soft > 0 else 4 * cores
    return max(1, min(4 * cores, by_files))


def batch_documents(
    documents: Iterable[str], batch_chars: int = BATCH_CHARS
) -> Iterator[list[str]]:
    """Group documents into lists of about `batch_chars` characters (a long document goes alone)."""
    batch: list[str] = []
    size = 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def encode_documents(
    tokenizer: Tokenizer, documents: list[str], dtype: np.dtype, append_eot: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of the documents, concatenated (with EOT after each when asked), and their lengths.

    Returns (tokens, lengths): tokens (sum(lengths),) of `dtype`, lengths (len(documents),) int64.
    """
    arrays = [document_tokens(tokenizer, doc, dtype, append_eot) for doc in documents]
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    tokens = np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)
    return tokens, lengths


def document_tokens(
    tokenizer: Tokenizer, doc: str, dtype: np.dtype, append_eot: bool
) -> np.ndarray:
    """One document's tokens as an array of `dtype` (its EOT after them when asked).

    A document longer than a batch is encoded piece by piece (split_at_token_boundaries: the same
    tokens as the whole), each piece's Python list turned into a compact array at once: the tokens
    of one 50 MB document as Python ints took ~800 MB where its uint16 array takes 22 MB.
    """
    pieces = split_at_token_boundaries(doc, BATCH_CHARS) if len(doc) > BATCH_CHARS else (doc,)
    parts = [np.asarray(tokenizer.encode(piece), dtype=dtype) for piece in pieces]
    if append_eot:
        parts.append(np.asarray([tokenizer.eot_id], dtype=dtype))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


# State of a worker process, set once by its initializer.
_worker_tokenizer: Tokenizer | None = None
_worker_dtype: np.dtype | None = None


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process exit as soon as the process that started it is gone.

    Without this, a prepare killed with SIGKILL leaves its workers running forever: reparented to
    init and blocked reading the task pipe, whose write end the other workers keep open.
    - Linux: prctl(PR_SET_PDEATHSIG, SIGKILL) has the kernel kill this process when its parent
      dies, whatever kills it. (Strictly, when the parent *thread* that forked it ends: the
      workers are forked by the thread iterating encode_in_order, which outlives the pool.)
    - The parent may have died before prctl ran, and then no signal ever comes: so compare
      getppid() with the pid the parent passed down (it changes when the parent dies).
    - Where prctl is missing (macOS), a daemon thread polls getppid() once a second instead.
    """
    watched_by_kernel = False
    if sys.platform.startswith("linux"):
        try:
            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            watched_by_kernel = libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    if not watched_by_kernel:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="gptlab-parent-watch", daemon=True).start()


def _init_worker(tokenizer: Tokenizer | dict, dtype: str, parent_pid: int) -> None:
    global _worker_tokenizer, _worker_dtype
    _die_with_parent(parent_pid)
    # A forked worker inherits the handler that turns SIGTERM into an unwinding exit in the
    # parent (gptlab.data.prepared_folder.building_folder); a worker has nothing to unwind: plain death.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Ctrl-C reaches the whole process group; the parent stops the pool in order (encode_in_order).
    # A worker dying of KeyboardInterrupt mid-batch would leave a broken pool to tear down instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_tokenizer = tokenizer_from_dict(tokenizer) if isinstance(tokenizer, dict) else tokenizer
    _worker_dtype = np.dtype(dtype)


def _encode_in_worker(documents: list[str], append_eot: bool) -> tuple[np.ndarray, np.ndarray]:
    return encode_documents(_worker_tokenizer, documents, _worker_dtype, append_eot)


def encode_in_order(
    batches: Iterable[list[str]],
    tokenizer: Tokenizer,
    dtype: np.dtype,
    *,
    workers: int,
    append_eot: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `encode_documents` of each batch, in order, computed by `workers` processes.

    With workers=1 everything runs in this process (no start-up cost, easy to debug). Stopping
    the iteration early (closing the generator) cancels the batches still queued. The workers
    exit by themselves when this process dies, even by SIGKILL (see _die_with_parent).
    """
    if workers <= 1:
        for batch in batches:
            yield encode_documents(tokenizer, batch, dtype, append_eot)
        return
    if "fork" in multiprocessing.get_all_start_methods():
        # Forked workers inherit the tokenizer already loaded here: building GPT-2's BPE tables
        # takes about a second per process, as long as tokenizing several megabytes. The
        # workers only tokenize, so they need none of the locks this process's threads may hold.
        context, worker_tokenizer = multiprocessing.get_context("fork"), tokenizer
    else:
        # Elsewhere each fresh interpreter rebuilds the tokenizer from its description.
        context, worker_tokenizer = multiprocessing.get_context("spawn"), tokenizer.to_dict()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(worker_tokenizer, np.dtype(dtype).str, os.getpid()),
    )
    pending = deque()
    batches = iter(batches)
    failed = False
    try:
        while True:
            while len(pending) < workers * BATCHES_IN_FLIGHT_PER_WORKER:
                batch = next(batches, None)
                if batch is None:
                    break
                pending.append(pool.submit(_encode_in_worker, batch, append_eot))
            if not pending:
                return
            yield pending.popleft().result()
    except (GeneratorExit, SystemExit, KeyboardInterrupt):
        # An orderly stop: the caller stopped early (a token budget), or this process was told
        # to stop (SIGTERM unwinds as SystemExit, see prepared_folder._sigterm_unwinds; Ctrl-C).
        # The workers are sound: the `finally` cancels the queued batches and waits the second
        # or two until each worker has sent back the one it holds. Killing them instead raced
        # with the executor's own threads (a worker killed while writing its result, or while
        # the queue's feeder wrote to it): an OSError traceback on exit, 3 times in 30 SIGTERMs.
        raise
    except BaseException:
        # A worker that could not start (too many open files) or died (the kernel killed it):
        # waiting for the pool could hang forever on a worker that never came up, so end the
        # workers instead of joining them.
        failed = True
        _kill_workers(pool)
        raise
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=not failed, cancel_futures=True)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    processes = getattr(pool, "_processes", None) or {}  # the executor keeps no public handle
    for process in list(processes.values()):
        if process.is_alive():
            process.kill()


def split_at_token_boundaries(text: str, piece_chars: int = BATCH_CHARS) -> Iterator[str]:
    """Cut a long text into pieces of about `piece_chars` that tokenize exactly like the whole.

    Each cut is placed just before a newline that follows a non-whitespace character. GPT-2's
    pre-tokenizer pattern never joins a non-whitespace character with the whitespace after it,
    and it matches left to right without looking back, so the tokens of the pieces, concatenated,
    equal the tokens of the whole text (for any tokenizer with GPT-2's pattern; trivially for
    characters). This lets one big text be tokenized in parallel and in bounded memory.
    """
    start = 0
    while len(text) - start > piece_chars:
        cut = text.find("\n", start + piece_chars)
        while cut != -1 and text[cut - 1].isspace():
            cut = text.find("\n", cut + 1)
        if cut == -1:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]
