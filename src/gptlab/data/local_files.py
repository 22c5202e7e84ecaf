"""Documents from local files: .txt, .jsonl, .json, .parquet and .csv, folders and globs.

- .txt: the whole file is one document.
- .jsonl (and .json holding one object per line): one document per line, from a text field.
- .json holding an array of objects: one document per object (the file is read whole, so use
  .jsonl for big corpora).
- .parquet: one document per row of a text column, read batch by batch with pyarrow.
- .csv: one document per row of a text column (header row required).

Files are read in sorted path order so the same files always give the same document stream.

Non-UTF-8 bytes: each invalid byte sequence becomes U+FFFD (the Unicode replacement character)
and is counted in `TextStats.invalid_utf8`, which `gptlab prepare` reports and records in
meta.json. Empty documents carry no text and are skipped (counted in `TextStats.empty_documents`).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.fileio import holds_run_files, is_prepared_folder, loads_json
from gptlab.optional import import_optional

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet", ".csv")
_REPLACEMENT_CHAR_UTF8 = "\ufffd".encode()
_PARQUET_BATCH_ROWS = 1024


@dataclass
class TextStats:
    """What reading a source ran into, counted while its documents stream past."""

    invalid_utf8: int = 0  # invalid byte sequences replaced by U+FFFD
    empty_documents: int = 0  # documents with no text, skipped


def decode_utf8(data: bytes, stats: TextStats) -> str:
    """Decode UTF-8, replacing invalid byte sequences with U+FFFD and counting them in `stats`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        # U+FFFD characters already present in the bytes are text, not replacements.
        stats.invalid_utf8 += text.count("\ufffd") - data.count(_REPLACEMENT_CHAR_UTF8)
        return text


def looks_like_path(spec: str) -> bool:
    """Whether `spec` names local files (an existing path, a glob, or something shaped like a path)."""
    return (
        any(ch in spec for ch in "*?[/\\")
        or spec.lower().endswith(SUPPORTED_SUFFIXES)
        or Path(spec).expanduser().exists()
    )


def expand_paths(spec: str) -> list[Path]:
    """The files a path, folder or glob names (sorted; folders are searched recursively)."""
    is_glob = any(ch in spec for ch in "*?[")
    if is_glob:
        matches = [Path(p) for p in glob.glob(str(Path(spec).expanduser()), recursive=True)]
        if not matches:
            raise GptlabError(f"no file matches {spec!r}")
    else:
        matches = [Path(spec).expanduser()]
        if not matches[0].exists():
            raise GptlabError(f"{spec} does not exist")
    files: list[Path] = []
    for path in matches:
        if path.is_dir():
            files.extend(_corpus_files(path))
        elif path.suffix.lower() in SUPPORTED_SUFFIXES:
            files.append(path)
        elif not is_glob:  # a glob may match other files too; a named file must be readable
            raise GptlabError(
                f"{path} is not a supported file type; use {', '.join(SUPPORTED_SUFFIXES)} files"
            )
    if not files:
        raise GptlabError(
            f"{spec!r} holds no {', '.join(SUPPORTED_SUFFIXES)} files to read documents from"
        )
    return sorted({p.resolve() for p in files})


def _corpus_files(folder: Path) -> Iterator[Path]:
    """The supported files under a corpus folder, leaving out hidden entries and what gptlab
    wrote there: a prepared dataset or a training run (its metrics, its checkpoints' JSON) read
    back as documents would train on gptlab's own output."""
    if is_prepared_folder(folder) or holds_run_files(folder):
        raise GptlabError(
            f"{folder} is a {'prepared dataset' if is_prepared_folder(folder) else 'training run'} "
            "written by gptlab, not a corpus; name the folder of your text files"
        )
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and not is_prepared_folder(here / d)
            and not holds_run_files(here / d)
        )
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                yield here / name


class LocalFiles:
    """A source made of local files (see the module docstring for what each type gives)."""

    def __init__(self, spec: str, *, text_column: str = "text"):
        self.spec = spec
        self.text_column = text_column
        self.files = expand_paths(spec)
        self.stats = TextStats()
        # One .txt file is one text (split by its tail); anything else is a set of documents.
        self.single_text = len(self.files) == 1 and self.files[0].suffix.lower() == ".txt"
        # A name for the prepared folder: the file's stem, or the folder holding the files.
        named = (
            self.files[0].stem
            if len(self.files) == 1
            else Path(os.path.commonpath(self.files)).name
        )
        self.slug = "files-" + (named or "root")

    def documents(self) -> Iterator[str]:
        for path in self.files:
            try:
                size = path.stat().st_size
                if size == 0:
                    if len(self.files) == 1:
                        raise GptlabError(f"{path} is empty: there is nothing to prepare")
                    continue
                yield from self._read(path)
            except PermissionError:
                raise GptlabError(f"cannot read {path}: permission denied") from None

    def _read(self, path: Path) -> Iterator[str]:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            documents: Iterator[str | None] = iter([decode_utf8(path.read_bytes(), self.stats)])
        elif suffix == ".parquet":
            documents = _parquet_documents(path, self.text_column)
        elif suffix == ".csv":
            documents = _csv_documents(path, self.text_column, self.stats)
        elif suffix == ".json" and _starts_with(path, b"["):
            documents = _json_array_documents(path, self.text_column, self.stats)
        else:
            documents = _jsonl_documents(path, self.text_column, self.stats)
        for text in documents:
            if text:
                yield text
            else:
                self.stats.empty_documents += 1

    def known_documents(self) -> int | None:
        """The number of documents when it is cheap to know (for the progress bar's ETA)."""
        if all(p.suffix.lower() == ".txt" for p in self.files):
            return len(self.files)
        if all(p.suffix.lower() == ".parquet" for p in self.files):
            pq = _pyarrow_parquet()
            return sum(pq.ParquetFile(p).metadata.num_rows for p in self.files)
        return None

    def describe(self) -> dict:
        # The fingerprint changes when any file is added, removed, resized or rewritten, so a
        # prepared dataset is rebuilt rather than reused after its files changed.
        fingerprint = hashlib.sha256()
        for path in self.files:
            st = path.stat()
            fingerprint.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        shown = [str(p) for p in self.files[:20]]
        return {
            "kind": "files",
            "spec": self.spec,
            "files": shown + ([f"... {len(self.files) - 20} more"] if len(self.files) > 20 else []),
            "num_files": len(self.files),
            "bytes": sum(p.stat().st_size for p in self.files),
            "text_column": self.text_column,
            "fingerprint": fingerprint.hexdigest(),
        }


def _starts_with(path: Path, prefix: bytes) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(prefix)


def _field(record, text_column: str, where: str) -> str | None:
    """The text field of one JSON record, or a GptlabError naming the fields it does have."""
    if not isinstance(record, dict):
        raise GptlabError(f"{where} is not a JSON object with a {text_column!r} field")
    if text_column not in record:
        fields = ", ".join(record) or "none"
        raise GptlabError(
            f"{where} has no field {text_column!r}; its fields are: {fields} "
            "(choose one as text_column)"
        )
    text = record[text_column]
    if text is not None and not isinstance(text, str):
        raise GptlabError(f"{where}: field {text_column!r} holds {type(text).__name__}, not text")
    return text


def _jsonl_documents(path: Path, text_column: str, stats: TextStats) -> Iterator[str | None]:
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            line = decode_utf8(raw, stats).strip()
            if not line:
                continue
            try:
                record = loads_json(line)
            except json.JSONDecodeError as exc:
                raise GptlabError(
                    f"line {line_no} of {path} is not valid JSON ({exc.msg})"
                ) from None
            yield _field(record, text_column, f"line {line_no} of {path}")


def _json_array_documents(path: Path, text_column: str, stats: TextStats) -> Iterator[str | None]:
    try:
        records = loads_json(decode_utf8(path.read_bytes(), stats))
    except json.JSONDecodeError as exc:
        raise GptlabError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    for index, record in enumerate(records):
        yield _field(record, text_column, f"item {index} of {path}")


def _csv_documents(path: Path, text_column: str, stats: TextStats) -> Iterator[str | None]:
    csv.field_size_limit(
        min(sys.maxsize, 2**31 - 1)
    )  # documents are longer than csv's 128 KiB default
    with open(path, "rb") as f:
        # Decoding line by line is exact for UTF-8 (b"\n" never occurs inside a multi-byte character).
        rows = csv.reader(decode_utf8(raw, stats) for raw in f)
        header = next(rows, None)
        if header is None:
            return
        if text_column not in header:
            raise GptlabError(
                f"{path} has no column {text_column!r}; its columns are: {', '.join(header)} "
                "(choose one as text_column)"
            )
        column = header.index(text_column)
        for row in rows:
            yield row[column] if column < len(row) else None


def _pyarrow_parquet():
    return import_optional("pyarrow.parquet", "data")


def _parquet_documents(path: Path, text_column: str) -> Iterator[str | None]:
    pq = _pyarrow_parquet()
    try:
        parquet = pq.ParquetFile(path)
    except (
        Exception
    ) as exc:  # pyarrow raises ArrowInvalid, OSError... for a file that is not parquet
        raise GptlabError(f"{path} is not a readable parquet file ({exc})") from None
    columns = parquet.schema_arrow.names
    if text_column not in columns:
        raise GptlabError(
            f"{path} has no column {text_column!r}; its columns are: {', '.join(columns)} "
            "(choose one as text_column)"
        )
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[text_column]):
        yield from batch.column(0).to_pylist()
