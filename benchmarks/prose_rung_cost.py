"""What each rung of the prose-cpu ladder costs per token on this CPU, timed side by side.

    python benchmarks/prose_rung_cost.py --prepared PREPARED_DIR --threads 2
    python benchmarks/prose_rung_cost.py --prepared PREPARED_DIR --rung "ve:model.value_embed=true"
    python benchmarks/prose_rung_cost.py --prepared PREPARED_DIR --dtype bf16 --only-given --rung ...

The ladder (BENCHMARKS.md, "The laptop recipe") compares rungs at equal steps, which the load
does not change; the preset is chosen at equal *time*, so each rung's gain must be weighed
against what it costs per token. FLOPs per token (gptlab.train.flops) miss what is not a matmul:
the lookup tables (value embeddings, a hashed bigram table, an untied embedding) cost no FLOPs
but AdamW still updates every row each step. This times the real training step
(`Trainer.advance`, as `gptlab train` runs it) of the base preset and of each rung in one
process, round-robin (the order reversed every other round), so a change in the machine's load
hits every rung alike; the answer is each rung's tokens/s relative to the base.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from bench_train_step import timed_steps
from train_step_sides import GptlabTraining

from gptlab.errors import GptlabError
from gptlab.train.config import build_run_config
from gptlab.train.flops import flops_per_token

# The ladder's rungs, as changes to the preset as it is now (ladder 2 moved it to 2,048 tokens
# per step with x0 blend and smear; the cooldown costs nothing per step).
RUNGS = {
    "prose-cpu (now)": (),
    "before ladder 2 (4,096 tokens/step, no x0 blend or smear)": (
        "train.tokens_per_step=4096",
        "train.micro_batch_size=16",
        "model.x0_blend=false",
        "model.smear=false",
    ),
    "4,096 tokens/step": ("train.tokens_per_step=4096", "train.micro_batch_size=16"),
    "without x0 blend + smear": ("model.x0_blend=false", "model.smear=false"),
    "+ value_embed": ("model.value_embed=true",),
    "+ hashed bigram, 16,384 rows": ("model.bigram_embed=true", "model.bigram_buckets=16384"),
    "untied head": ("model.tie_weights=false",),
    "context 128": ("model.block_size=128",),
    "four heads of 32 (before ladder 5)": ("model.n_head=4",),
}
COMMON = (
    "train.device=cpu",
    "train.max_steps=1000",  # never reached: the budget only sizes the schedule
    "train.max_seconds=none",
    "train.eval_every=0",
    "train.sample_every=0",
    "train.checkpoint_every=0",
)


def parse_rung(text: str) -> tuple[str, tuple[str, ...]]:
    name, _, overrides = text.partition(":")
    if not name or "=" not in overrides:
        raise GptlabError(f"--rung {text!r}: write NAME:KEY=VALUE[,KEY=VALUE...]")
    return name, tuple(overrides.split(","))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True, help="a prepared data folder")
    parser.add_argument("--rung", action="append", default=[], help="NAME:KEY=V[,KEY=V...]")
    # fp32 by default, as ladder 2's table was timed; bf16 is the preset's own (a CPU with bf16 units)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="train.dtype")
    parser.add_argument(
        "--only-given", action="store_true", help="time the base and the --rung rungs only"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=4, help="round-robin passes")
    parser.add_argument("--steps", type=int, default=4, help="steps per rung per round")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted steps per rung")
    args = parser.parse_args(argv)
    if min(args.threads, args.rounds, args.steps) < 1 or args.warmup < 0:
        parser.error("--threads, --rounds and --steps must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    try:
        names = list(RUNGS)[:1] if args.only_given else list(RUNGS)  # the first is the base
        rungs = {name: RUNGS[name] for name in names}
        rungs.update(parse_rung(text) for text in args.rung)
        if not (args.prepared / "meta.json").is_file():
            raise GptlabError(f"{args.prepared} is not a prepared folder (no meta.json)")
        data = (
            f"data.prepared_dir={args.prepared}",
            f"train.threads={args.threads}",
            f"train.dtype={args.dtype}",
        )
        configs = {
            name: build_run_config("prose-cpu", overrides=[*COMMON, *data, *overrides])
            for name, overrides in rungs.items()
        }
        times = {name: [] for name in rungs}
        with tempfile.TemporaryDirectory(prefix="prose-rung-cost-") as scratch:
            sides = {
                name: GptlabTraining(config, Path(scratch) / f"run{i}")
                for i, (name, config) in enumerate(configs.items())
            }
            for side in sides.values():
                timed_steps(side.step, args.warmup)
            for round_ in range(args.rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for name in order:
                    times[name] += timed_steps(sides[name].step, args.steps)
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
            parameters = {name: side.trainer.num_parameters for name, side in sides.items()}
            for side in sides.values():
                side.close()
    except GptlabError as exc:
        print(f"prose_rung_cost: error: {exc}", file=sys.stderr)
        return 1
    tokens_per_s = {
        name: configs[name].train.tokens_per_step / (statistics.median(t) / 1000)
        for name, t in times.items()
    }
    base = next(iter(rungs))
    print(
        f"\ntorch {torch.__version__}, {args.dtype}, {args.threads} threads, {args.rounds} rounds x "
        f"{args.steps} steps per rung (round-robin), medians\n"
    )
    print("| rung | parameters | FLOPs/token | ms/step | tokens/s | x base tokens/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, config in configs.items():
        flops = flops_per_token(config.model, parameters[name])
        print(
            f"| {name} | {parameters[name]:,} | {flops / 1e6:.2f}M | "
            f"{statistics.median(times[name]):.0f} | {tokens_per_s[name]:,.0f} | "
            f"{tokens_per_s[name] / tokens_per_s[base]:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
