"""The prepared-dataset folder: its meta.json, its tokenizer, and how it is put in place.

A prepared folder holds

    meta.json        what was prepared and how (written last)
    tokenizer.json   the tokenizer, as gptlab.tokenizers.base.save_tokenizer writes it
    train_000000.bin ...  val_000000.bin ...   token shards (see gptlab.data.shards)

It is built under a temporary name beside its final place and renamed into place only when
complete, so an interrupted prepare never leaves anything that looks prepared. A build that is
killed outright (SIGKILL, power loss) leaves its temporary folder behind. The next build of the
same folder with the same settings carries it on when it holds a progress record (PROGRESS_FILE,
written by gptlab.data.prepare as batches finish); otherwise it is removed once its builder is
gone (see remove_stale_partials).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.fileio import read_json, remove_atomic_write_leftovers
from gptlab.tokenizers.base import Tokenizer, load_tokenizer

FORMAT_VERSION = 1
DEFAULT_VAL_FRACTION = 0.1
META_KEYS = ("splits", "tokenizer", "dtype", "vocab_size")  # what the readers rely on
DEFAULT_SHARD_TOKENS = 100_000_000  # 200 MB per shard as uint16
# Inside a building folder: "<pid> <host>" of the process building it (removed before the rename).
BUILDER_FILE = ".builder"
# Inside a building folder: how far the build got ({"settings_hash": ..., ...}, see prepare.py).
PROGRESS_FILE = ".progress.json"
# A building folder without BUILDER_FILE (its builder was killed in the instant between creating
# the folder and writing the file) is stale once nothing in it has changed for this long.
UNOWNED_PARTIAL_SECONDS = 3600


def settings_hash(settings: dict) -> str:
    """A short stable hash of everything that decides a prepared folder's content."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def read_meta(folder: str | Path) -> dict:
    """The meta.json of a prepared folder, or a GptlabError saying how to prepare one."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise GptlabError(
            f"{folder} is not a prepared dataset (no meta.json): run `gptlab prepare SOURCE` "
            "first and pass the folder it prints"
        )
    meta = read_json(path, "prepared data's")
    found = meta.get("format")
    if found != FORMAT_VERSION:
        raise GptlabError(
            f"{folder} was prepared in format {found!r}, this gptlab reads format "
            f"{FORMAT_VERSION}; prepare it again"
        )
    missing = [key for key in META_KEYS if key not in meta]
    splits = meta.get("splits")
    if (
        missing
        or not isinstance(splits, dict)
        or not all(isinstance(s, dict) for s in splits.values())
    ):
        raise GptlabError(
            f"{path} is damaged ({'no ' + ', '.join(missing) if missing else 'bad splits'}); "
            "prepare the dataset again"
        )
    return meta


def load_prepared_tokenizer(folder: str | Path) -> Tokenizer:
    """The tokenizer a prepared folder was tokenized with."""
    read_meta(folder)
    return load_tokenizer(Path(folder) / "tokenizer.json")


def is_prepared(folder: Path, expected_hash: str) -> bool:
    """True when `folder` is already prepared with these settings; an error if it is in the way."""
    if not folder.exists():
        return False
    if (folder / "meta.json").is_file():
        if read_meta(folder).get("settings_hash") == expected_hash:
            return True
        raise GptlabError(
            f"{folder} holds a dataset prepared with other settings; remove it or choose "
            "another output folder (out)"
        )
    if not folder.is_dir() or any(folder.iterdir()):
        raise GptlabError(
            f"{folder} exists and is not a prepared dataset; choose another output folder (out)"
        )
    return False


@contextlib.contextmanager
def building_folder(folder: Path, expected_hash: str) -> Iterator[Path]:
    """A temporary folder beside `folder`, renamed to it when the block completes.

    If the block raises, the temporary folder is removed and `folder` is left as it was. SIGTERM
    during the block raises SystemExit(143) (see _sigterm_unwinds), so a terminated build cleans
    up too (worker pools shut down, the temporary folder removed). Leftovers of earlier builds of
    `folder` whose process is gone are removed first.
    """
    building = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        building = _claim_resumable_partial(folder, expected_hash)
        remove_stale_partials(folder)
        if building is None:
            building = Path(
                tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent)
            )
            # mkdtemp makes the folder private (0700); give it the permissions mkdir would.
            umask = os.umask(0)
            os.umask(umask)
            building.chmod(0o777 & ~umask)
        # Who builds it, so that a later build can tell a live build from a killed one.
        (building / BUILDER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    except OSError as exc:
        if building is not None:
            shutil.rmtree(building, ignore_errors=True)
        raise GptlabError(f"cannot create {folder}: {exc.strerror}") from None
    try:
        with _sigterm_unwinds():
            yield building
            (building / BUILDER_FILE).unlink(missing_ok=True)
            try:
                os.rename(building, folder)
            except OSError:
                # Another prepare with the same settings may have finished first: then all is done.
                if not is_prepared(folder, expected_hash):
                    raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _claim_resumable_partial(folder: Path, expected_hash: str) -> Path | None:
    """A killed build of `folder` with the same settings and a progress record, renamed to a
    name of our own (rename is atomic: of two builds starting at once, one gets it), or None."""
    for partial in _partials(folder):
        try:
            if not _builder_is_gone(partial):
                continue
            progress = json.loads((partial / PROGRESS_FILE).read_text(encoding="utf-8"))
            complete = all(k in progress for k in ("documents_read", "tokens_written", "splits"))
            if progress.get("settings_hash") != expected_hash or not complete:
                continue  # another build's, or a record this version cannot carry on from
            # Ours before the rename, so the folder never looks abandoned to a third build.
            (partial / BUILDER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
            claimed = partial.with_name(f".{folder.name}.{os.urandom(6).hex()[:8]}.partial")
            os.rename(partial, claimed)
        except (OSError, ValueError, AttributeError):
            continue  # unreadable, not ours to resume, or another build claimed it first
        # A kill in the middle of writing a progress record leaves its temporary file; the
        # build carries on here, so the finished folder would keep it.
        with contextlib.suppress(OSError):
            remove_atomic_write_leftovers(claimed)
        return claimed
    return None


def _partials(folder: Path) -> list[Path]:
    """The building folders of `folder` (named as building_folder names them), any builder's."""
    # mkdtemp's random part: 8 characters of [a-z0-9_].
    pattern = re.compile(rf"\.{re.escape(folder.name)}\.[a-z0-9_]{{8}}\.partial")
    try:
        entries = list(os.scandir(folder.parent))
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                found.append(Path(entry.path))
        except OSError:
            continue
    return found


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the building folders of `folder` left by builds whose process is gone.

    Only directories named exactly as building_folder names them (`.{name}.XXXXXXXX.partial`,
    beside `folder`) are candidates, and of those only the ones whose BUILDER_FILE names a process
    of this host that no longer exists, or, without that file, in which nothing has changed for
    UNOWNED_PARTIAL_SECONDS. A live builder's folder, another host's, or anything else is never
    touched. Best effort: returns the folders removed, never raises for a folder it cannot read.
    """
    removed = []
    for partial in _partials(folder):
        try:
            if _builder_is_gone(partial):
                shutil.rmtree(partial)
                removed.append(partial)
        except OSError:
            continue
    return removed


def _builder_is_gone(partial: Path) -> bool:
    try:
        pid_text, _, host = (partial / BUILDER_FILE).read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError, UnicodeDecodeError):
        # No (readable) builder file: stale only when nothing in it has changed for a long time.
        newest = max(
            [partial.stat().st_mtime]
            + [e.stat(follow_symlinks=False).st_mtime for e in os.scandir(partial)]
        )
        return time.time() - newest > UNOWNED_PARTIAL_SECONDS
    if pid <= 0 or host != socket.gethostname():
        return False  # not a process of this machine: nothing here can tell whether it lives
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False  # it exists (PermissionError: another user's process), or no valid pid
    return False


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit(128 + SIGTERM) in the main thread.

    By default SIGTERM ends the process on the spot: no `finally` runs, so a build would leave its
    temporary folder, and its worker pool would not be shut down. Raising instead unwinds every
    context manager on the way out (the exit status stays 143, as for a plain SIGTERM). Only
    installed where SIGTERM still has its default action (a caller's own handler is kept) and
    only for the block; a second SIGTERM during the cleanup kills as usual.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def check_same_tokenizer(data_dir: str | Path, tokenizer) -> None:
    """A prepared folder's tokens mean something to the model only if it used the model's tokenizer."""
    data_tokenizer = load_prepared_tokenizer(data_dir)
    if data_tokenizer.to_dict() != tokenizer.to_dict():
        raise GptlabError(
            f"{data_dir} was tokenized with another tokenizer ({describe_tokenizer(data_tokenizer)}) than "
            f"the model's ({describe_tokenizer(tokenizer)}); prepare the data again with the model's "
            "tokenizer (gptlab prepare SOURCE --tokenizer MODEL_DIR/tokenizer.json), or score a text instead"
        )


def describe_tokenizer(tokenizer) -> str:
    return f"{tokenizer.name}, {tokenizer.vocab_size:,} tokens"
