"""Files in and out: atomic writes, and the one reader of UTF-8 text and JSON lines.

A write goes to a temp file in the same folder, is fsynced, then renamed: a crash or kill
mid-write leaves either the old file or the new one, never a half-written file that looks valid.

A read of a file the user named fails with one line that says what is wrong with it (missing, a
folder, not UTF-8, not JSON on line N), never a traceback. Corpora are read elsewhere
(gptlab.data.local_files): there a bad byte is replaced and counted, not refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from gptlab.errors import GptlabError


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read the umask is to set it, so set it straight back
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) to produce the file, then move it to `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
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


def read_json(path: str | Path, what: str = "file", expect: type = dict) -> object:
    """The JSON value in `path`, of type `expect`; what is wrong with the file is one line."""
    path = Path(path)
    with friendly_read_errors(path, what):
        text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
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
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if torn_tail_ok and not line.endswith("\n"):
                    return  # only the last line can lack its newline
                raise GptlabError(
                    f"{path} line {line_no}: not valid JSON ({exc.msg.removesuffix(' at')}, column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise GptlabError(f"{path} line {line_no}: expected a JSON object")
            yield line_no, record
