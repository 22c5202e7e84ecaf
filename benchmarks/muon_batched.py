"""Muon's orthogonalisation one matrix at a time against batched by shape, side by side.

    python benchmarks/muon_batched.py --preset prose-cpu --threads 2

`gptlab.train.muon.Muon` orthogonalises the matrices of one shape together, as a stack: a layer
stack holds each shape once per layer, so a few batched matmuls replace many small ones. This
times both ways on the hidden matrices of a preset's model (the ones Muon updates), round-robin
in one process (the order reversed every other round), so a change in the machine's load hits
both alike, and checks that they agree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.train.config import build_run_config
from gptlab.train.muon import orthogonalise, same_shape_batches
from gptlab.train.optim import hidden_matrices


def one_at_a_time(updates: list[torch.Tensor]) -> list[torch.Tensor]:
    return [orthogonalise(update) for update in updates]


def batched_by_shape(updates: list[torch.Tensor]) -> list[torch.Tensor]:
    """As Muon.step does it: each batch of same-shape matrices orthogonalised as one stack."""
    return [
        direction
        for batch in same_shape_batches(updates)
        for direction in orthogonalise(torch.stack(batch))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="prose-cpu", help="whose model's matrices to time")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=10, help="round-robin passes")
    parser.add_argument("--repeats", type=int, default=10, help="optimizer steps per way per round")
    args = parser.parse_args(argv)
    if min(args.threads, args.rounds, args.repeats) < 1:
        parser.error("--threads, --rounds and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    try:
        config = build_run_config(args.preset, overrides=[])
    except GptlabError as exc:
        print(f"muon_batched: error: {exc}", file=sys.stderr)
        return 1
    generator = torch.Generator().manual_seed(0)
    matrices = hidden_matrices(GPT(config.model))
    updates = [torch.randn(p.shape, generator=generator) for p in matrices]
    ways = {"one at a time": one_at_a_time, "batched by shape": batched_by_shape}
    # batched results come back batch by batch: line the reference up in the same order
    in_batch_order = [update for batch in same_shape_batches(updates) for update in batch]
    first, second = one_at_a_time(in_batch_order), batched_by_shape(updates)
    worst = max((a - b).abs().max().item() for a, b in zip(first, second, strict=True))
    times: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(args.rounds):
        order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
        for name in order:
            started = time.perf_counter()
            for _ in range(args.repeats):
                ways[name](updates)
            times[name].append((time.perf_counter() - started) / args.repeats * 1000)
    shapes = sorted({tuple(p.shape) for p in matrices})
    print(
        f"torch {torch.__version__}, {args.threads} threads; {len(matrices)} matrices of "
        f"{args.preset} ({', '.join('x'.join(map(str, s)) for s in shapes)}); "
        f"{args.rounds} rounds x {args.repeats}, medians; largest difference {worst:.1e}\n"
    )
    print("| way | ms per step (every matrix orthogonalised once) | x one at a time |")
    print("| --- | ---: | ---: |")
    base = statistics.median(times["one at a time"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {base / median:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
