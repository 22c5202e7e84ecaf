"""gptlab's training step against Hugging Face GPT2LMHeadModel + torch AdamW, ms per step.

    python benchmarks/bench_train_step.py --threads 2                  # every shape
    python benchmarks/bench_train_step.py --shapes small-bpe --rounds 5 --steps 4
    python benchmarks/bench_train_step.py --shapes char --profile      # where gptlab's step goes

gptlab's side is the real loop: `Trainer.advance`, one call per optimizer step, which draws the
micro-batches from the TokenLoader, runs forward and backward, clips the global grad norm, steps
AdamW, reads the loss and writes the metrics.jsonl line, exactly as `gptlab train` does (no
evals, samples or checkpoints in between). The reference (train_step_sides.py) is GPT2LMHeadModel of
the same shape with torch's fused AdamW, on the very same batches.

Both live in one process with the same thread count. Rounds alternate which goes first (ABBA),
so drift in the machine's speed and other jobs' load hit both sides alike; the first steps of
each side are warm-up and not counted. The result: median ms/step of each side and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from train_step_sides import GptlabTraining, ReferenceTraining

from gptlab.errors import GptlabError
from gptlab.train.config import build_run_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Shape:
    what: str
    preset: str
    overrides: tuple[str, ...]


# One optimizer step = one micro-batch on every shape (tokens_per_step = batch x context), fp32,
# no dropout, no compile: the step of the measurement.
SHAPES = {
    "char": Shape("default char model (4L/128, ctx 64, batch 16)", "shakespeare-char", ()),
    "small-bpe": Shape(
        "small-bpe (6L/384, ctx 256, batch 8, GPT-2 BPE)",
        "small-bpe",
        (
            f"data.source={SHARED_DATA / 'openwebtext' / 'openwebtext_sample.txt'}",
            "data.max_docs=none",
            "model.dropout=0.0",
            "train.micro_batch_size=8",
            "train.tokens_per_step=2048",
        ),
    ),
    "gpt2": Shape(
        "gpt2 124M (12L/768, ctx 256, batch 1, GPT-2 BPE)",
        "gpt2",
        (
            f"data.source={SHARED_DATA / 'fineweb_edu' / 'sample.jsonl'}",
            "data.val_fraction=0.1",
            "model.block_size=256",
            "train.micro_batch_size=1",
            "train.tokens_per_step=256",
            "train.compile=false",
        ),
    ),
}
COMMON = (
    "train.device=cpu",
    "train.dtype=fp32",
    "train.max_steps=1000000",
    "train.max_seconds=none",
    "train.eval_every=0",
    "train.sample_every=0",
    "train.checkpoint_every=0",
)


def timed_steps(step, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return times


def bench_shape(
    name: str, threads: int, rounds: int, steps: int, warmup: int, profile: bool
) -> dict:
    shape = SHAPES[name]
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as scratch:
        overrides = [*shape.overrides, *COMMON, f"train.threads={threads}"]
        config = build_run_config(shape.preset, overrides=overrides)
        ours = GptlabTraining(config, Path(scratch) / "run")
        try:
            reference = ReferenceTraining.like(ours.trainer)
            sides = {"gptlab": ours.step, "reference": reference.step}
            for step in sides.values():
                timed_steps(step, warmup)
            if profile:
                print_profile(name, sides)
            times = {side: [] for side in sides}
            for round_ in range(rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for side in order:
                    times[side] += timed_steps(sides[side], steps)
        finally:
            ours.close()
    median = {side: statistics.median(t) for side, t in times.items()}
    return {
        "shape": shape.what,
        "gptlab_ms": median["gptlab"],
        "reference_ms": median["reference"],
        "ratio": median["gptlab"] / median["reference"],
        "steps": rounds * steps,
        "parameters": ours.trainer.num_parameters,
    }


def print_profile(name: str, sides: dict) -> None:
    """torch.profiler's top operators over a few steps of each side (self CPU time)."""
    for side, step in sides.items():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            timed_steps(step, 3)
        print(f"\n### {name}: {side}, 3 steps, by self CPU time\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (both sides)")
    parser.add_argument("--rounds", type=int, default=4, help="alternations (ABBA...)")
    parser.add_argument("--steps", type=int, default=5, help="steps per side per round")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted steps per side")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables")
    args = parser.parse_args(argv)
    if min(args.threads, args.rounds, args.steps) < 1 or args.warmup < 0:
        parser.error("--threads, --rounds and --steps must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)  # set explicitly: never the library's default
    rows = []
    try:
        for name in args.shapes:
            rows.append(
                bench_shape(name, args.threads, args.rounds, args.steps, args.warmup, args.profile)
            )
            print(f"{name}: done", file=sys.stderr)
    except GptlabError as exc:
        print(f"bench_train_step: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"\ntorch {torch.__version__}, {args.threads} threads, {args.rounds} rounds x "
        f"{args.steps} steps per side (ABBA), medians\n"
    )
    print("| shape | parameters | gptlab ms/step | reference ms/step | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['shape']} | {row['parameters']:,} | {row['gptlab_ms']:.1f} | "
            f"{row['reference_ms']:.1f} | {row['ratio']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
