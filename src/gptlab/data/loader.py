"""Batches of training windows from a prepared dataset: deterministic, resumable, rank-aware.

The split's shards are memory-mapped (never read whole into RAM) and seen as one long token
sequence; a window is block_size + 1 consecutive tokens of it (windows may span two shards), and
a batch gives x = window[:-1], y = window[1:] as int64 tensors of shape (B, T).

Two modes:
- "random": every batch draws B window starts uniformly, as nanoGPT does. The draw for batch k
  comes from a generator seeded with (seed, rank, k), so the state to resume is just k.
- "sequential": epochs over the non-overlapping windows [k*T, k*T + T + 1) of the split, in an
  order shuffled afresh each epoch (seeded with (seed, epoch)). The stream runs on from one epoch
  into the next, so no window is dropped at an epoch's end.
- "shifted": as sequential, but each epoch's grid of windows starts at an offset o in [0, T)
  drawn for that epoch, [o + k*T, o + k*T + T + 1): every token is still read once per epoch
  (less at most 2T at the ends), and a token is seen at a different position of its window from
  one epoch to the next, instead of always the same. An epoch has (N - T) // T windows whatever
  o is, so every epoch (and every rank) takes the same number of steps.

Data-parallel training: rank r of world w reads a part disjoint from every other rank's. In
random mode that part is the r-th of w equal contiguous stretches of tokens; in sequential mode
it is every w-th window of the epoch's shuffled order (the same count for every rank, so ranks
stay in step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gptlab.data.prepared_folder import read_meta
from gptlab.data.shards import open_shards
from gptlab.errors import GptlabError, require

MODES = ("random", "sequential", "shifted")
EPOCH_MODES = ("sequential", "shifted")  # the modes that walk epochs of non-overlapping windows


def split_num_tokens(data_dir: str | Path, split: str) -> int:
    """How many tokens a split of a prepared dataset holds."""
    return _split_info(read_meta(data_dir), data_dir, split)["tokens"]


def _split_info(meta: dict, data_dir, split: str) -> dict:
    if split not in meta["splits"]:
        raise GptlabError(f"{data_dir} has no split {split!r}; it has {', '.join(meta['splits'])}")
    return meta["splits"][split]


class TokenLoader:
    """(x, y) batches from one split of a prepared dataset (see the module docstring)."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        batch_size: int,
        block_size: int,
        *,
        mode: str = "random",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ):
        require(mode in MODES, f"unknown loader mode {mode!r}: use {' or '.join(MODES)}")
        require(batch_size > 0 and block_size > 0, "batch_size and block_size must be positive")
        require(0 <= rank < world_size, f"rank {rank} is outside a world of size {world_size}")
        meta = read_meta(data_dir)
        info = _split_info(meta, data_dir, split)
        self.data_dir = Path(data_dir)
        self.split, self.mode, self.seed = split, mode, seed
        self.batch_size, self.block_size = batch_size, block_size
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.num_tokens = int(info["tokens"])
        self.vocab_size = int(meta["vocab_size"])

        window = block_size + 1
        if self.num_tokens < window:
            raise GptlabError(
                f"split {split!r} of {data_dir} has {self.num_tokens:,} tokens, fewer than "
                f"block_size + 1 = {window:,}; use a smaller block size or prepare more data"
            )
        self._shards = open_shards(self.data_dir, split, info["shards"], meta["dtype"])
        # Token offset where each shard starts in the split's sequence, plus the end.
        self._shard_starts = np.concatenate([[0], np.cumsum([s.size for s in self._shards])])

        # random mode: this rank's stretch of tokens
        self._lo = rank * self.num_tokens // world_size
        self._hi = (rank + 1) * self.num_tokens // world_size
        # sequential and shifted modes: windows per epoch, for the whole split and for this rank
        # (shifted: those that fit whatever the epoch's offset, o <= T - 1)
        last_token = self.num_tokens - 1 if mode != "shifted" else self.num_tokens - block_size
        self.num_windows = max(last_token, 0) // block_size
        self.windows_per_rank = self.num_windows // world_size
        if mode == "random" and self._hi - self._lo < window:
            raise GptlabError(
                f"split {split!r} has {self.num_tokens:,} tokens: split over {world_size} ranks that "
                f"leaves rank {rank} {self._hi - self._lo:,}, fewer than block_size + 1 = {window:,}"
            )
        if mode in EPOCH_MODES and self.windows_per_rank == 0:
            raise GptlabError(
                f"split {split!r} has {self.num_windows:,} windows of {window:,} tokens, fewer than "
                f"the {world_size} ranks; use a smaller block size or prepare more data"
            )
        self._step = 0  # batches served (random mode)
        self._epoch, self._position = 0, 0  # epoch modes: epoch and next window of this rank
        self._epoch_order: np.ndarray | None = None  # this epoch's window starts for this rank

    @property
    def batches_per_epoch(self) -> int:
        """Full batches in one sequential epoch of this rank (the stream continues past it)."""
        return self.windows_per_rank // self.batch_size

    def next_batch(self, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y): int64 tensors (B, T) on the loader's device, y = x shifted by one.

        rows: B for this batch (default batch_size); a batch-size ramp asks for fewer. Random mode
        draws batch k's rows from generator (seed, rank, k) whatever B is, and the epoch modes
        take the next B windows, so the stream resumes exactly at any mix of sizes.
        """
        rows = self.batch_size if rows is None else rows
        require(rows > 0, f"a batch needs at least one row, got {rows}")
        starts = self._random_starts(rows) if self.mode == "random" else self._epoch_starts(rows)
        windows = np.empty((rows, self.block_size + 1), dtype=np.int64)  # (B, T+1)
        for row, start in enumerate(starts):
            windows[row] = self._read(int(start), self.block_size + 1)
        # A shard edited or damaged on disk can hold ids the vocabulary lacks; said here, in one
        # line, instead of an IndexError (or a CUDA device-side assert) inside the embedding.
        if windows.max() >= self.vocab_size:
            raise GptlabError(
                f"{self.data_dir}: the {self.split} split holds token id {int(windows.max())}, "
                f"beyond its vocabulary of {self.vocab_size}: a shard is damaged; prepare it again"
            )
        x = torch.from_numpy(windows[:, :-1].copy())  # (B, T)
        y = torch.from_numpy(windows[:, 1:].copy())  # (B, T)
        if self.device.type == "cuda":
            # Page-locked host memory lets the copy run asynchronously with the GPU's work.
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(
                self.device, non_blocking=True
            )
        return x.to(self.device), y.to(self.device)

    def _random_starts(self, rows: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.rank, self._step])
        self._step += 1
        # Starts in [lo, hi - (T + 1)], so the whole window lies in this rank's stretch.
        return rng.integers(self._lo, self._hi - self.block_size, size=rows)

    def epoch_starts(self, epoch: int) -> np.ndarray:
        """The token offsets where this rank's windows of `epoch` start, in the order served."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
        offset = 0
        if self.mode == "shifted":  # drawn from a stream of its own, apart from the order
            offset = int(np.random.default_rng([self.seed, epoch, 1]).integers(self.block_size))
        mine = order[self.rank :: self.world_size][: self.windows_per_rank]
        return mine.astype(np.int64) * self.block_size + offset

    def _epoch_starts(self, rows: int) -> np.ndarray:
        starts = []
        while len(starts) < rows:
            if self._position == self.windows_per_rank:
                self._epoch, self._position, self._epoch_order = self._epoch + 1, 0, None
            if self._epoch_order is None:
                self._epoch_order = self.epoch_starts(self._epoch)
            take = min(rows - len(starts), self.windows_per_rank - self._position)
            starts.extend(self._epoch_order[self._position : self._position + take])
            self._position += take
        return np.asarray(starts, dtype=np.int64)

    def _read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of the split, across a shard boundary if need be."""
        shard = int(np.searchsorted(self._shard_starts, start, side="right")) - 1
        offset = start - int(self._shard_starts[shard])
        tokens = self._shards[shard][offset : offset + length]
        if tokens.size == length:
            return tokens
        parts = [tokens]
        have = tokens.size
        while have < length:
            shard += 1
            parts.append(self._shards[shard][: length - have])
            have += parts[-1].size
        return np.concatenate(parts)

    def state_dict(self) -> dict:
        """Everything needed to continue at exactly the next batch (plain ints and strings)."""
        return {
            "split": self.split,
            "mode": self.mode,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "block_size": self.block_size,
            "num_tokens": self.num_tokens,
            "step": self._step,
            "epoch": self._epoch,
            "position": self._position,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in (
            "split",
            "mode",
            "seed",
            "rank",
            "world_size",
            "batch_size",
            "block_size",
            "num_tokens",
        ):
            if state.get(key) != getattr(self, key):
                raise GptlabError(
                    f"cannot resume this loader: its {key} is {getattr(self, key)!r}, the saved "
                    f"state's is {state.get(key)!r} (resume with the settings of the saved run)"
                )
        self._step, self._position = int(state["step"]), int(state["position"])
        if int(state["epoch"]) != self._epoch:
            self._epoch, self._epoch_order = int(state["epoch"]), None
