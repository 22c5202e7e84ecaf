"""nanochat's CPU run (runs/runcpu.sh: its own rustbpe tokenizer, then base_train of a 6-layer
model) on the same corpus and clock as gptlab's prose-cpu preset, scored by gptlab's bits-per-byte
code on the same held-out articles.

    python benchmarks/peer_nanochat.py NANOCHAT_CHECKOUT ../shared/data/wikipedia/enwiki2015.jsonl \
        --seconds 600 --work /tmp/peer-nanochat

NANOCHAT_CHECKOUT: a checkout of github.com/karpathy/nanochat; its scripts run from there
(`python -m scripts.tok_train`, `python -m scripts.base_train`) and its model and tokenizer are
imported from there to be scored, never copied. Its packages: torch, rustbpe, tiktoken, pyarrow,
filelock, requests, pyyaml (no `uv sync`: this script runs with the interpreter it is given).

The data: the corpus's training documents written as nanochat's parquet shards
(NANOCHAT_BASE_DIR=WORK, WORK/base_data_climbmix/shard_NNNNN.parquet, a `text` column), the
held-out documents as the last shard, which nanochat reads as its validation split. The recipe:
runcpu.sh's tok_train (2B characters at most: the whole corpus) and its base_train flags
(--depth=6 --head-dim=64 --window-pattern=L --max-seq-len=512 --device-batch-size=32
--total-batch-size=16384 --num-iterations=5000), with --save-every so that a clock can stop it
and the last checkpoint is scored; evaluation, CORE metric and samples during training are off
(they would eat the same clock). The tokenizer's training time is not counted in --seconds, as
gptlab's own BPE is not. --smoke shrinks everything to prove the path works.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_common import (  # noqa: E402  (benchmarks/ is not a package)
    ScoredModel,
    ScoredTokenizer,
    held_out_bits_per_byte,
    run_for,
    split_documents,
)

RUNCPU_BASE_TRAIN = [
    "--depth=6",
    "--head-dim=64",
    "--window-pattern=L",
    "--max-seq-len=512",
    "--device-batch-size=32",
    "--total-batch-size=16384",
    "--num-iterations=5000",
    "--eval-every=-1",
    "--core-metric-every=-1",
    "--sample-every=-1",
    "--run=dummy",
]


def write_shards(
    train: list[str], held_out: list[str], folder: Path, per_shard: int = 1000
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    shards = [train[i : i + per_shard] for i in range(0, len(train), per_shard)] + [held_out]
    for index, documents in enumerate(shards):  # the last one, held out, is nanochat's val
        pq.write_table(pa.table({"text": documents}), folder / f"shard_{index:05d}.parquet")
    print(f"{len(shards) - 1} training shards, 1 validation shard in {folder}")


def load_nanochat(checkout: Path):
    sys.path.insert(0, str(checkout))
    from nanochat.checkpoint_manager import load_model  # from the checkout

    model, tokenizer, meta = load_model("base", torch.device("cpu"), phase="eval")
    print(f"nanochat checkpoint of step {meta.get('step')}")
    block_size = model.config.sequence_len
    scored = ScoredModel(model, block_size, model.config.vocab_size, lambda m, idx: m(idx))
    bos = tokenizer.get_bos_token_id()
    return scored, ScoredTokenizer(tokenizer.enc, eot_id=bos, vocab_size=model.config.vocab_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a nanochat checkout")
    parser.add_argument("corpus", help="the .jsonl corpus")
    parser.add_argument("--seconds", type=float, default=600.0, help="base_train wall time")
    parser.add_argument("--save-every", type=int, default=2, help="base_train steps per checkpoint")
    parser.add_argument(
        "--held-out-bytes",
        type=int,
        default=1_000_000,
        help="score the held-out documents up to this many bytes (gptlab eval bpb --max-bytes)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/peer-nanochat"))
    parser.add_argument("--smoke", action="store_true", help="tiny data, tiny model, 2 steps")
    args = parser.parse_args()

    checkout = args.checkout.resolve()
    work = args.work.resolve()
    train, held_out = split_documents(args.corpus)
    if args.smoke:
        train, held_out = train[:100], held_out[:10]
    write_shards(train, held_out, work / "base_data_climbmix")
    env = {"NANOCHAT_BASE_DIR": str(work), "PYTHONPATH": str(checkout)}
    tok_train = [sys.executable, "-m", "scripts.tok_train", "--max-chars=2000000000"]
    if args.smoke:
        tok_train.append("--vocab-size=1024")
    started = time.perf_counter()
    subprocess.run(tok_train, cwd=checkout, env={**os.environ, **env}, check=True)
    print(f"nanochat tokenizer trained in {time.perf_counter() - started:.0f} s")

    base_train = [sys.executable, "-m", "scripts.base_train", *RUNCPU_BASE_TRAIN]
    base_train.append(f"--save-every={args.save_every}")
    if args.smoke:
        base_train += [
            "--depth=2",
            "--max-seq-len=128",
            "--device-batch-size=4",
            "--total-batch-size=512",
            "--num-iterations=2",
        ]
    log = work / "base_train.log"
    wall = run_for(base_train, args.seconds, cwd=str(checkout), env=env, log_path=str(log))
    print(f"nanochat trained for {wall:.0f} s of wall time (log: {log})")
    os.environ.update(env)
    model, tokenizer = load_nanochat(checkout)
    with torch.inference_mode():
        result = held_out_bits_per_byte(model, tokenizer, held_out, args.held_out_bytes)
    print(
        json.dumps(
            {"peer": "nanochat", "wall_seconds": wall, "load_average": os.getloadavg(), **result}
        )
    )


if __name__ == "__main__":
    main()
