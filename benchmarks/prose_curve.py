"""Held-out bits per byte against training time: pretraining runs' curves, with peers as points.

    python benchmarks/prose_curve.py runs/prose-10m runs/prose-30m runs/prose-60m \
        --bytes-per-token 3.8335 --point "nanoGPT:600:2.078" --out docs/images/prose-bpb-curve.png

A run's metrics.jsonl holds its val loss (nats per token on the held-out split) at each
evaluation with the training seconds so far; bits per byte = loss / ln 2 / bytes per token of
that split (`gptlab prepare` prints its tokens, the corpus its bytes). Several runs of one recipe
with different budgets (10, 30, 60 minutes) share the picture: each is labelled with its budget
(train.max_seconds in its config.toml) and its final value is marked and written beside it. A
point before a run's end is not what a shorter run would reach (its learning rate is still high
there), which is why each budget is its own run. --point LABEL:SECONDS:BPB adds a model scored
elsewhere (a peer's `gptlab eval bpb`) as a marker.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.plotting import color_cycle, new_figure, save_figure


def curve(run: Path, bytes_per_token: float) -> tuple[list[float], list[float]]:
    """(training seconds, held-out bits per byte) at each of the run's evaluations."""
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        raise GptlabError(f"{run} has no metrics.jsonl: give the folder of a `gptlab train` run")
    seconds, bpb = [], []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("val_loss") is not None and record.get("elapsed_s") is not None:
            seconds.append(record["elapsed_s"])
            bpb.append(record["val_loss"] / math.log(2) / bytes_per_token)
    if not seconds:
        raise GptlabError(f"{metrics} has no evaluation yet (no val_loss): nothing to draw")
    return seconds, bpb


def run_label(run: Path) -> str:
    """The run's folder name and its budget, e.g. "prose-30m (30-min budget)"."""
    config = run / "config.toml"
    if not config.is_file():
        return run.name
    budget = tomllib.loads(config.read_text(encoding="utf-8")).get("train", {}).get("max_seconds")
    if not isinstance(budget, int | float):  # "none": a step budget
        return run.name
    return f"{run.name} ({budget / 60:g}-min budget)"


def parse_point(text: str) -> tuple[str, float, float]:
    try:
        label, seconds, bpb = text.rsplit(":", 2)
        return label, float(seconds), float(bpb)
    except ValueError:
        raise GptlabError(
            f"--point {text!r}: write LABEL:SECONDS:BPB, e.g. nanoGPT:600:2.078"
        ) from None


def draw(runs: list[Path], bytes_per_token: float, points: list[str], out: Path) -> None:
    peers = [parse_point(text) for text in points]  # every input checked before drawing
    curves = [(run_label(run), *curve(run, bytes_per_token)) for run in runs]
    fig = new_figure(7, 4.5)
    ax = fig.subplots()
    colors = color_cycle()  # one colour per run, then one per peer: never two alike
    for i, (label, seconds, bpb) in enumerate(curves):
        minutes, color = [s / 60 for s in seconds], colors[i % len(colors)]
        ax.plot(minutes, bpb, marker="o", markersize=3, alpha=0.8, color=color, label=label)
        ax.scatter([minutes[-1]], [bpb[-1]], s=60, color=color, zorder=3)
        ax.annotate(
            f"{bpb[-1]:.3f}", (minutes[-1], bpb[-1]), textcoords="offset points", xytext=(6, 4)
        )
    for j, (label, seconds, bpb) in enumerate(peers, start=len(curves)):
        color = colors[j % len(colors)]
        ax.scatter([seconds / 60], [bpb], marker="x", s=60, color=color, label=label, zorder=3)
    ax.set_xlabel("training time (minutes, 2-core CPU)")
    ax.set_ylabel("held-out bits per byte (lower is better)")
    ax.set_title("Wikipedia (2015): bits per byte against training time")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (gptlab train --out)")
    parser.add_argument("--bytes-per-token", type=float, required=True)
    parser.add_argument("--point", action="append", default=[], help="LABEL:SECONDS:BPB")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.bytes_per_token <= 0:
        parser.error("--bytes-per-token must be > 0")
    try:
        draw(args.runs, args.bytes_per_token, args.point, args.out)
    except GptlabError as exc:
        print(f"prose_curve: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
