"""The speedrun ladder: from the default recipe to the `speedrun` preset, one change at a time.

Each rung adds one change to the rung before and is trained by the experiment runner
(gptlab.experiment) with the same seeds and the same wall-clock budget, so the table says what
each change is worth on this machine. Finished runs are reused on a re-run (same --out).

    python benchmarks/speedrun.py --seeds 2 --max-seconds 40 --out runs/speedrun-ladder

Run it alone on the machine: the budget is wall-clock, so anything else running costs steps.
"""

from __future__ import annotations

import argparse
import sys

from gptlab.errors import GptlabError
from gptlab.experiment import parse_variation, plan_runs, run_experiment, summarize

# (what the rung changes, its overrides): each rung keeps every change above it. The last rung is
# the speedrun preset (src/gptlab/presets/speedrun.toml).
LADDER = [
    ("default recipe (shakespeare-char)", ["model.pos=learned"]),  # learned is the default
    ("+ rotary positions", ["model.pos=rope"]),
    ("+ squared-ReLU MLP", ["model.mlp=relu2"]),
    ("+ QK-norm, AdamW beta2 0.95", ["model.qk_norm=true", "train.beta2=0.95"]),
    ("+ Muon for the hidden matrices", ["train.optimizer=muon"]),
    ("+ batches of 2,048 tokens", ["train.tokens_per_step=2048", "train.micro_batch_size=32"]),
    ("+ context 128 (16 x 128 per batch)", ["model.block_size=128", "train.micro_batch_size=16"]),
    ("+ 3 layers, 64 wide", ["model.n_layer=3", "model.n_embd=64"]),
    ("+ AdamW lr 1.2e-2 (embeddings, head)", ["train.lr=1.2e-2"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=40.0)
    parser.add_argument("--out", default="runs/speedrun-ladder")
    args = parser.parse_args(argv)
    try:
        rows = run_ladder(args.seeds, args.max_seconds, args.out)
    except GptlabError as exc:
        print(f"benchmarks/speedrun.py: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"| rung | val loss (mean ± std over {args.seeds} seeds) | min-max | parameters | tokens/s |"
    )
    print("|---|---:|---:|---:|---:|")
    for change, s in rows:
        print(
            f"| {change} | {s.val_loss_mean:.4f} ± {s.val_loss_std:.4f} | "
            f"{s.val_loss_min:.4f}-{s.val_loss_max:.4f} | {s.num_parameters:,} | {s.tokens_per_s:,.0f} |"
        )
    return 0


def run_ladder(seeds: int, max_seconds: float, out: str) -> list:
    """Train every rung (reusing finished runs); (change, CombinationSummary) per rung."""
    budget = [f"train.max_seconds={max_seconds}", "train.max_steps=none"]
    rows, previous = [], []
    for index, (change, overrides) in enumerate(LADDER):
        # The rung's own change is its one "varied" setting, so its folder name says what it is.
        planned = plan_runs(
            [parse_variation(overrides[0])],
            seeds=seeds,
            out=f"{out}/rung{index}",
            overrides=[*previous, *overrides[1:]],
            budget=budget,
        )
        summary = summarize(run_experiment(planned))[0]
        rows.append((change, summary))
        previous += overrides
        print(f"{change}: val loss {summary.val_loss_mean:.4f}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(main())
