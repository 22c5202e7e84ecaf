"""Files in and out: atomic writes, and the one reader of UTF-8 text and JSON lines.

A write goes to a temp file in the same folder, is fsynced, then renamed: a crash or kill
mid-write leaves either the old file or the new one, never a half-written file that looks valid.

A read of a file the user named fails with one line that says what is wrong with it (missing, a
folder, not UTF-8, not JSON on line N), never a traceback. Corpora are read elsewhere
(gptlab.data.local_files): there a bad byte is replaced and counted, not refused. All JSON is parsed by
loads_json, which refuses values nested too deeply to walk.

The folders gptlab writes (a training run, a prepared dataset) are recognised here, on every floor,
and refuse_overlap keeps an output off the inputs a command reads.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from gptlab.errors import GptlabError

_HASH_CHUNK_BYTES = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks (a download, a shipped sample)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read the umask is to set it, so set it straight back
    os.umask(mask)
    return mask


_UMASK = _read_umask()

# The folders gptlab writes, recognised on every floor: where a path is read (a corpus folder skips
# them) and where one is written (a model never goes into a run).
METRICS_LOG_FILE = "metrics.jsonl"  # a training run's log (gptlab.train.metrics writes it)
CHECKPOINTS_DIR = "checkpoints"  # a training run's checkpoints (gptlab.checkpoints.run)
PREPARED_META_FILE = (
    "meta.json"  # a prepared dataset's description, written last (gptlab.data.prepared_folder)
)


def is_run_folder(path: str | Path) -> bool:
    """A training run's folder (its checkpoints or its metrics): never a place to write a model."""
    path = Path(path)
    return (path / CHECKPOINTS_DIR).is_dir() or (path / METRICS_LOG_FILE).is_file()


def holds_run_files(path: str | Path) -> bool:
    """A folder with a run's own files in it: its metrics log, or a checkpoint named step-N.
    Stricter than is_run_folder, for folders nobody named as a run (the folders above an --out,
    those inside a corpus): a project's own `checkpoints/` folder does not make it a run."""
    path = Path(path)
    checkpoints = path / CHECKPOINTS_DIR
    return (path / METRICS_LOG_FILE).is_file() or (
        checkpoints.is_dir() and any(checkpoints.glob("step-*"))
    )


def is_prepared_folder(path: str | Path) -> bool:
    return (Path(path) / PREPARED_META_FILE).is_file()


# How writers that are not Python's file objects report a failed write: torch.save raises
# RuntimeError ("[enforce fail at inline_container.cc] unexpected pos ...", "PytorchStreamWriter
# failed writing file ..."), safetensors raises SafetensorError ("Error while serializing:
# IoError(Os { code: 28, kind: StorageFull, ... })").
_WRITE_FAILURE = re.compile(r"unexpected pos|failed writing|write failed|IoError|Os \{", re.I)
_OS_CODE = re.compile(r"code: (\d+)")


@contextlib.contextmanager
def writer_errors_as_os_errors(path: str | Path) -> Iterator[None]:
    """Turn a full disk (or another failed write) that torch.save or safetensors met into the
    OSError Python's own writers raise, so it reaches the user as one line, not a traceback."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        message = str(exc)
        if not _WRITE_FAILURE.search(message):
            raise  # another failure of the writer is a bug worth its traceback
        code = _OS_CODE.search(message)
        number = int(code.group(1)) if code else errno.EIO
        reason = os.strerror(number) if code else "the write failed (is the disk full?)"
        raise OSError(number, reason, str(path)) from None


@contextlib.contextmanager
def removed_on_failure(folder: str | Path) -> Iterator[Path]:
    """A folder a command creates: if the command fails, the folder goes too, so no empty or
    half-filled --out is left behind. A folder that already existed is left as it is."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        yield folder
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) to produce the file, then move it to `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with writer_errors_as_os_errors(path):
            write(tmp)
        # mkstemp creates the file 0600 (and some writers, safetensors among them, create their
        # file anew the same way): give it the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# atomic_write's temporary names: mkstemp's `.{name}.` + 8 of [a-z0-9_] + `.tmp`.
_ATOMIC_WRITE_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_atomic_write_leftovers(folder: str | Path) -> None:
    """Delete the temporary files that atomic_write calls in `folder` left unfinished: a
    process killed between writing one and its rename (SIGKILL runs no cleanup). Only for a
    folder no other process writes to, such as a killed build's folder once it is claimed."""
    for entry in os.scandir(folder):
        if _ATOMIC_WRITE_TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def friendly_read_errors(path: Path, what: str) -> Iterator[None]:
    """Turn the ways opening and decoding a user's file fail into one GptlabError line."""
    try:
        yield
    except FileNotFoundError:
        raise GptlabError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise GptlabError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise GptlabError(
            f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); convert it to UTF-8"
        ) from None
    except PermissionError as exc:
        raise GptlabError(f"{what} {path} cannot be read ({exc.strerror})") from None


def read_text(path: str | Path, what: str = "file", *, allow_empty: bool = False) -> str:
    """The UTF-8 text of `path`; `what` names it in errors ("data file", "--text-file")."""
    path = Path(path)
    with friendly_read_errors(path, what):
        text = path.read_text(encoding="utf-8")
    if not allow_empty and not text.strip():
        raise GptlabError(f"{what} {path} is empty")
    return text


def inside(folder: str | Path, name: object, what: str) -> Path:
    """folder / name, refusing a name (from a file a stranger may have written) that is not a
    plain relative path staying inside folder: `../../etc/passwd` or `/etc/passwd`."""
    folder = Path(folder)
    if not isinstance(name, str) or not name:
        raise GptlabError(f"{what} names a file {name!r}, which is not a file name")
    path = folder / name
    if Path(name).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
        raise GptlabError(f"{what} names {name!r}, outside {folder}; refusing to read it")
    return path


def refuse_overlap(
    out: str | Path,
    reads: dict[str, str | Path | None],
    flag: str = "out",
    *,
    holding_ok: bool = False,
) -> None:
    """Refuse an output path that is a path the command reads, lies inside one, or holds one.

    `flag` names the output in messages: the setting ("out") from the library, the flag
    ("--out") from the CLI. `reads` maps how each input is named ("checkpoint") to its path (None or a hub
    name "hf:..." is skipped). Writing there would replace the input, mix the output into it (a
    corpus folder reads it back as documents), or, with --overwrite, delete it.
    """
    target = Path(out).resolve()
    for name, source in reads.items():
        if source is None or str(source).startswith("hf:"):
            continue
        source = Path(source).resolve()
        if target == source:
            raise GptlabError(f"{flag} {out} is the {name} it reads; write somewhere else")
        if target.is_relative_to(source):
            raise GptlabError(f"{flag} {out} lies inside the {name} {source}; write somewhere else")
        if source.is_relative_to(target) and not holding_ok:
            raise GptlabError(f"{flag} {out} holds the {name} {source}; write somewhere else")


# Far deeper than anything gptlab or a person writes (a tokenizer's merges: 3 levels). Deeper is
# damage or an attack, and would overflow the stack of whatever walks the value next (json.dumps
# in a reply, pydantic): json.loads alone raises RecursionError only near 1,000 levels.
MAX_JSON_DEPTH = 100


def loads_json(text: str | bytes) -> object:
    """json.loads, with a value nested deeper than MAX_JSON_DEPTH refused as malformed JSON
    (json.JSONDecodeError, as every reader already handles) rather than a RecursionError."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        if not _nested_deeper_than(value, MAX_JSON_DEPTH):
            return value
    doc = text if isinstance(text, str) else ""
    raise json.JSONDecodeError(f"values nested more than {MAX_JSON_DEPTH} levels deep", doc, 0)


def _nested_deeper_than(value: object, limit: int) -> bool:
    """Whether arrays/objects nest deeper than `limit`; a loop, not recursion, so any depth."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                pending.append((child, depth + 1))
    return False


def read_json(path: str | Path, what: str = "file", expect: type = dict) -> object:
    """The JSON value in `path`, of type `expect`; what is wrong with the file is one line."""
    path = Path(path)
    with friendly_read_errors(path, what):
        text = path.read_text(encoding="utf-8")
    try:
        value = loads_json(text)
    except json.JSONDecodeError as exc:
        raise GptlabError(
            f"{what} {path} is not valid JSON ({exc.msg.removesuffix(' at')}, line {exc.lineno})"
        ) from None
    if not isinstance(value, expect):
        names = {dict: "an object", list: "an array", str: "a string"}
        found = names.get(type(value), type(value).__name__)
        raise GptlabError(f"{what} {path} holds {found}, not {names.get(expect, expect.__name__)}")
    return value


def jsonl_records(
    path: str | Path, what: str = "file", *, torn_tail_ok: bool = False
) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file, streamed.

    torn_tail_ok: a log that is appended to (metrics.jsonl) may end in half a line when a disk
    filled or a process died mid-write; such a last line without its newline is skipped.
    """
    path = Path(path)
    with friendly_read_errors(path, what), path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = loads_json(line)
            except json.JSONDecodeError as exc:
                if torn_tail_ok and not line.endswith("\n"):
                    return  # only the last line can lack its newline
                raise GptlabError(
                    f"{path} line {line_no}: not valid JSON ({exc.msg.removesuffix(' at')}, column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise GptlabError(f"{path} line {line_no}: expected a JSON object")
            yield line_no, record


def remove_entries(folder: Path, names) -> None:
    """Delete the named files and folders in `folder` that exist, and nothing else: what one
    command wrote there, before it writes afresh (a run folder, an SAE folder)."""
    for name in names:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
