"""`gptlab experiment`: train every combination of varied settings over several seeds, and compare."""

from __future__ import annotations

import argparse

from gptlab.cli.common import add_threads_arg, run_overrides

EXAMPLES = """\
examples:
  gptlab experiment --vary model.norm=layernorm,rmsnorm --vary model.pos=learned,rope \\
      --seeds 2 --max-steps 300 --out runs/norm-pos
  gptlab experiment --base my.toml --vary model.mlp=gelu,swiglu,relu2 --max-seconds 60
  gptlab experiment --vary train.lr=3e-4,1e-3,3e-3 --max-steps 500 model.n_layer=4
  (the same command with the same --out finishes an interrupted experiment: finished runs are skipped)
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="compare settings: train every combination over seeds, tabulate and plot",
        description="Train every combination of the --vary values, each with seeds S, S+1, ... "
        "(S = the base train.seed) and the same budget, then write OUT/results.md, results.csv and "
        "loss_curves.png. Every config is built and checked before anything trains. Without "
        "--max-steps or --max-seconds, the base config's budget applies to every run.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base", metavar="FILE.toml", help="the base run config (TOML)")
    parser.add_argument(
        "--preset", metavar="NAME", help="a named preset as the base (default shakespeare-char)"
    )
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a setting and its values to compare, e.g. model.norm=layernorm,rmsnorm (repeatable: "
        "the grid is every combination)",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, metavar="N", help="runs per combination (default 1)"
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--max-steps", type=int, metavar="N", help="every run trains exactly N steps"
    )
    budget.add_argument(
        "--max-seconds", type=float, metavar="S", help="every run trains S seconds (training only)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="the experiment folder (default: runs/experiment-DATE-TIME)"
    )
    add_threads_arg(parser, default=None)  # passed on as train.threads, kept in config.toml
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="base overrides for every run, e.g. model.n_layer=4 train.lr=1e-3",
    )
    parser.set_defaults(func=main)


def budget_overrides(max_steps: int | None, max_seconds: float | None) -> list[str]:
    """One budget rule for every run: the other limit is switched off so it cannot end runs early."""
    if max_steps is not None:
        return [f"train.max_steps={max_steps}", "train.max_seconds=none"]
    if max_seconds is not None:
        return [f"train.max_seconds={max_seconds}", "train.max_steps=none"]
    return []


def main(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from gptlab.experiment import (
        LOSS_CURVES_FILE,
        RESULTS_CSV,
        RESULTS_MARKDOWN,
        parse_variation,
        plan_runs,
        run_experiment,
        write_results,
    )

    variations = [parse_variation(text) for text in args.vary]
    out = Path(args.out or f"runs/experiment-{time.strftime('%Y%m%d-%H%M%S')}")
    planned = plan_runs(
        variations,
        seeds=args.seeds,
        out=out,
        preset=args.preset,
        config_file=args.base,
        overrides=run_overrides(args),
        budget=budget_overrides(args.max_steps, args.max_seconds),
    )
    print(f"gptlab experiment: {len(planned)} runs in {out}")
    results = run_experiment(planned)
    write_results(out, planned, results)
    print((out / RESULTS_MARKDOWN).read_text(encoding="utf-8"), end="")
    print(f"wrote {out / RESULTS_MARKDOWN}, {out / RESULTS_CSV}, {out / LOSS_CURVES_FILE}")
    return 0
