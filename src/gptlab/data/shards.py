"""Token shards: raw little-endian arrays of token ids on disk, written in order, read by memmap.

A split ("train", "val") is a sequence of shard files `<split>_000000.bin`, `<split>_000001.bin`,
... each holding at most `shard_tokens` tokens as uint16 (when every id fits) or uint32. There is
no header: meta.json records each shard's file name, token count and sha256, and the dtype.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gptlab.errors import GptlabError
from gptlab.fileio import inside

HASH_CHUNK_BYTES = 8 << 20  # read size when re-hashing shards


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every token id of a vocabulary."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


class ShardWriter:
    """Appends tokens to the shards of one split, starting a new file every `shard_tokens` tokens.

    Each shard is hashed while it is written (sha256), so nothing is read back to checksum it.
    """

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.folder = Path(folder)
        self.split = split
        self.dtype = np.dtype(dtype)
        self.shard_tokens = shard_tokens
        self.tokens = 0  # total written to this split
        self.documents = 0  # maintained by the caller: documents whose tokens went here
        self.shards: list[dict] = []  # finished shards: {"file", "tokens", "sha256"}
        self._file = None
        self._hash = None
        self._in_shard = 0

    def write(self, tokens: np.ndarray) -> None:
        tokens = np.ascontiguousarray(tokens, dtype=self.dtype)
        while tokens.size:
            if self._file is None:
                self._open_next()
            room = self.shard_tokens - self._in_shard
            part, tokens = tokens[:room], tokens[room:]
            data = memoryview(part).cast("B")
            self._file.write(data)
            self._hash.update(data)
            self._in_shard += part.size
            self.tokens += part.size
            if self._in_shard == self.shard_tokens:
                self._finish_shard()

    def state(self) -> dict:
        """What resume() needs to carry on after a kill: the counts, the finished shards, and how
        many tokens of the open shard are on disk (flushed here, so a killed process's
        operating system still writes them)."""
        if self._file is not None:
            self._file.flush()
        open_shard = None if self._file is None else {"file": self._name, "tokens": self._in_shard}
        return {
            "tokens": self.tokens,
            "documents": self.documents,
            "shards": list(self.shards),
            "open": open_shard,
        }

    def resume(self, state: dict) -> None:
        """Continue from a state() recorded by a killed writer: the open shard is cut back to the
        recorded length (a kill may have left more, or less was flushed: then it is an error)
        and re-hashed, so appending goes on as if nothing had happened."""
        self.tokens, self.documents = int(state["tokens"]), int(state["documents"])
        self.shards = [dict(shard) for shard in state["shards"]]
        open_shard = state["open"]
        if open_shard is None:
            return
        path = inside(self.folder, open_shard["file"], "the progress record")
        length = int(open_shard["tokens"]) * self.dtype.itemsize
        if not path.is_file() or path.stat().st_size < length:
            raise GptlabError(f"{path} is shorter than its progress record; prepare from scratch")
        self._file = open(path, "r+b")
        self._file.truncate(length)
        self._name, self._hash, self._in_shard = open_shard["file"], hashlib.sha256(), 0
        while chunk := self._file.read(HASH_CHUNK_BYTES):
            self._hash.update(chunk)
        self._in_shard = int(open_shard["tokens"])

    def close(self) -> list[dict]:
        """Finish the last shard and return the shard list for meta.json."""
        if self._file is not None:
            self._finish_shard()
        return self.shards

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open_next(self) -> None:
        name = f"{self.split}_{len(self.shards):06d}.bin"
        self._file = open(self.folder / name, "wb")
        self._name = name
        self._hash = hashlib.sha256()
        self._in_shard = 0

    def _finish_shard(self) -> None:
        self._file.close()
        self._file = None
        self.shards.append(
            {"file": self._name, "tokens": self._in_shard, "sha256": self._hash.hexdigest()}
        )


def open_shards(folder: Path, split: str, shards: list[dict], dtype: str) -> list[np.memmap]:
    """Memory-map the shards of a split read-only, checking each file has the size meta.json says."""
    arrays = []
    if dtype not in ("uint16", "uint32"):
        raise GptlabError(f"meta.json in {folder} gives token dtype {dtype!r}; prepare it again")
    dtype = np.dtype(dtype)
    for shard in shards:
        if not isinstance(shard, dict) or not isinstance(shard.get("tokens"), int):
            raise GptlabError(f"meta.json in {folder} lists a damaged shard; prepare it again")
        path = inside(folder, shard.get("file"), f"meta.json in {folder}")
        expected = shard["tokens"] * dtype.itemsize
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise GptlabError(
                f"shard {path} of split {split!r} is missing; prepare the dataset again"
            ) from None
        if size != expected:
            raise GptlabError(
                f"shard {path} has {size} bytes, meta.json says {expected}; prepare the dataset again"
            )
        arrays.append(np.memmap(path, dtype=dtype, mode="r", shape=(shard["tokens"],)))
    return arrays


def check_shard_hashes(folder: Path, meta: dict, show_progress: bool = True) -> int:
    """Re-hash every shard of every split and compare with meta.json; the bytes checked.

    Sizes are checked whenever shards are opened; a shard edited in place keeps its size, so only
    its sha256 tells. Reading everything back costs a pass over the data (about a second per GB),
    which is why this runs on request (`gptlab prepare --verify`) and before long runs.
    """
    folder = Path(folder)
    dtype = np.dtype(meta["dtype"]) if meta.get("dtype") in ("uint16", "uint32") else None
    if dtype is None:
        raise GptlabError(
            f"meta.json in {folder} gives token dtype {meta.get('dtype')!r}; prepare it again"
        )
    listed = [
        (split, shard) for split, info in meta["splits"].items() for shard in info.get("shards", [])
    ]
    for split, shard in listed:
        # Sizes first, so a missing or truncated shard is named before any long read starts.
        open_shards(folder, split, [shard], meta["dtype"])
        if not isinstance(shard.get("sha256"), str):
            raise GptlabError(
                f"meta.json in {folder} lists shard {shard.get('file')!r} without a sha256; prepare it again"
            )
    total = sum(shard["tokens"] * dtype.itemsize for _, shard in listed)
    with tqdm(
        total=total, unit="B", unit_scale=True, desc="verify", disable=not show_progress
    ) as bar:
        for split, shard in listed:
            path = inside(folder, shard["file"], f"meta.json in {folder}")
            digest = hashlib.sha256()
            with open(path, "rb") as file:
                while chunk := file.read(HASH_CHUNK_BYTES):
                    digest.update(chunk)
                    bar.update(len(chunk))
            if digest.hexdigest() != shard["sha256"]:
                raise GptlabError(
                    f"shard {path} of split {split!r} does not match the sha256 meta.json records "
                    "(it changed after it was prepared); prepare the dataset again"
                )
    return total
