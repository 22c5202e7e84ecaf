"""The prepared-dataset folder: its meta.json, its tokenizer, and how it is put in place.

A prepared folder holds

    meta.json        what was prepared and how (written last)
    tokenizer.json   the tokenizer, as gptlab.tokenizers.base.save_tokenizer writes it
    train_000000.bin ...  val_000000.bin ...   token shards (see gptlab.data.shards)

It is built under a temporary name beside its final place and renamed into place only when
complete, so an interrupted prepare never leaves anything that looks prepared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.fileio import read_json
from gptlab.tokenizers.base import Tokenizer, load_tokenizer

FORMAT_VERSION = 1
DEFAULT_VAL_FRACTION = 0.1
META_KEYS = ("splits", "tokenizer", "dtype", "vocab_size")  # what the readers rely on
DEFAULT_SHARD_TOKENS = 100_000_000  # 200 MB per shard as uint16


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
            "another --out"
        )
    if not folder.is_dir() or any(folder.iterdir()):
        raise GptlabError(f"{folder} exists and is not a prepared dataset; choose another --out")
    return False


@contextlib.contextmanager
def building_folder(folder: Path, expected_hash: str) -> Iterator[Path]:
    """A temporary folder beside `folder`, renamed to it when the block completes.

    If the block raises, the temporary folder is removed and `folder` is left as it was.
    """
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        building = Path(
            tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent)
        )
        # mkdtemp makes the folder private (0700); give it the permissions mkdir would.
        umask = os.umask(0)
        os.umask(umask)
        building.chmod(0o777 & ~umask)
    except OSError as exc:
        raise GptlabError(f"cannot create {folder}: {exc.strerror}") from None
    try:
        yield building
        try:
            os.rename(building, folder)
        except OSError:
            # Another prepare with the same settings may have finished first: then all is done.
            if not is_prepared(folder, expected_hash):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
