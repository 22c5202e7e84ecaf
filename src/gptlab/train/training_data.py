"""The trainer's view of the data: a prepared folder, its tokenizer, and batches for each use.

    train batches   TokenLoader in the configured mode, seeded, each rank drawing its own share
    eval batches    a fixed set of windows (the same at every evaluation, so losses compare)

Preparation happens on rank 0 only; the other ranks are told where it went.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.data.loader import TokenLoader
from gptlab.data.prepare import prepare_dataset
from gptlab.data.prepared_folder import load_prepared_tokenizer, read_meta
from gptlab.data.shards import check_shard_hashes
from gptlab.train.config import DataConfig, RunConfig
from gptlab.train.distributed import DistributedContext, broadcast_from_main

EVAL_SEED = 0  # the evaluation windows never change with the training seed
# data.verify_shards="auto" re-hashes the shards before a run planned for at least this many
# tokens or seconds: there, the pass over the data (about a second per GB) is lost in the noise.
LONG_RUN_TOKENS = 1_000_000_000
LONG_RUN_SECONDS = 3600


def wants_shard_check(config: RunConfig) -> bool:
    """Whether this run re-hashes its shards before it starts (data.verify_shards)."""
    mode, train = config.data.verify_shards, config.train
    if mode != "auto":
        return mode == "always"
    planned_tokens = (train.max_steps or 0) * train.tokens_per_step
    return planned_tokens >= LONG_RUN_TOKENS or (train.max_seconds or 0) >= LONG_RUN_SECONDS


@dataclass
class TrainingData:
    folder: Path
    tokenizer: object
    loader_mode: str
    context: DistributedContext
    device: torch.device
    splits: dict[str, dict]  # meta.json's "splits": documents and tokens of train and val

    @classmethod
    def open(
        cls,
        config: DataConfig,
        context: DistributedContext,
        device: torch.device,
        verify_shards: bool = False,
    ) -> TrainingData:
        """Prepare the data if needed (rank 0; the others wait), then open it.

        With verify_shards, rank 0 re-hashes every shard first (a damaged shard stops all ranks).
        """
        folder = Path(config.prepared_dir) if config.prepared_dir else None
        already_prepared = folder is not None and (folder / "meta.json").is_file()
        if context.is_main and not already_prepared:
            folder = prepare_dataset(
                config.source,
                tokenizer=config.tokenizer,
                out=folder,
                val_fraction=config.val_fraction,
                max_docs=config.max_docs,
                max_tokens=config.max_tokens,
                text_column=config.text_column,
            )
        if context.is_main and verify_shards:
            check_shard_hashes(folder, read_meta(folder))
        folder = Path(broadcast_from_main(str(folder) if folder else None, context))
        splits = read_meta(folder)["splits"]
        tokenizer = load_prepared_tokenizer(folder)
        return cls(folder, tokenizer, config.loader_mode, context, device, splits)

    def train_loader(self, batch_size: int, block_size: int, seed: int):
        return TokenLoader(
            self.folder,
            "train",
            batch_size,
            block_size,
            mode=self.loader_mode,
            seed=seed,
            rank=self.context.rank,
            world_size=self.context.world_size,
            device=self.device,
        )

    def eval_batches(self, split: str, batch_size: int, block_size: int, tokens: int | None):
        """The fixed evaluation windows of `split`: about `tokens` tokens (None: the whole split).

        A fresh sequential loader with a fixed seed walks the same shuffled non-overlapping
        windows every time; each rank takes its own share. "The whole split" is every full batch
        of one epoch (at most batch_size - 1 windows per rank are left out).
        """
        loader = TokenLoader(
            self.folder,
            split,
            batch_size,
            block_size,
            mode="sequential",
            seed=EVAL_SEED,
            rank=self.context.rank,
            world_size=self.context.world_size,
            device=self.device,
        )
        available = loader.batches_per_epoch
        per_batch = batch_size * block_size * self.context.world_size
        wanted = available if tokens is None else max(1, round(tokens / per_batch))
        for _ in range(max(1, min(wanted, available))):
            yield loader.next_batch()
