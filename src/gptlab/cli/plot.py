"""`gptlab plot`: loss curves of one or more training runs, overlaid in one PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="plot the loss curves of training runs",
        description="Overlay the train (smoothed) and val loss curves of run folders against tokens seen.",
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="training run folders (each holds metrics.jsonl)"
    )
    parser.add_argument(
        "--out",
        metavar="FILE.png",
        help="where to write the picture (default: loss.png, or RUN/loss.png for one run)",
    )
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="legend names, one per run (default: folder names)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gptlab.cli.common import check_output_file
    from gptlab.errors import GptlabError
    from gptlab.fileio import METRICS_LOG_FILE, refuse_overlap
    from gptlab.train.plots import LOSS_PLOT_FILE, plot_runs

    if args.labels is not None and len(args.labels) != len(args.runs):
        raise GptlabError(
            f"--labels gives {len(args.labels)} names for {len(args.runs)} runs; give one per run"
        )
    for run_dir in args.runs:
        if not Path(run_dir).is_dir():
            raise GptlabError(f"run folder {run_dir} does not exist")
    if args.out is not None:
        out = check_output_file(args.out, args.overwrite, "--out", "loss.png")
        for run_dir in args.runs:  # --overwrite replaces a picture, never the log it reads
            refuse_overlap(out, {"run's metrics log": Path(run_dir) / METRICS_LOG_FILE}, "--out")
    else:  # a run's own loss.png is its picture, redrawn by training too: replaced freely
        out = Path(args.runs[0]) / LOSS_PLOT_FILE if len(args.runs) == 1 else Path(LOSS_PLOT_FILE)
    written = plot_runs(args.runs, out, labels=args.labels)
    print(f"wrote {written}")
    return 0
