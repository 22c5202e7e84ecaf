"""Held-out bits per byte against training time: a pretraining run's curve, with peers as points.

    python benchmarks/prose_curve.py runs/prose --bytes-per-token 3.8335 \
        --point "nanoGPT:600:2.11" --out docs/images/prose-bpb-curve.png

A run's metrics.jsonl holds its val loss (nats per token on the held-out split) at each
evaluation with the training seconds so far; bits per byte = loss / ln 2 / bytes per token of
that split (`gptlab prepare` prints its tokens, the corpus its bytes). --point LABEL:SECONDS:BPB
adds a model scored elsewhere (a peer's `gptlab eval bpb`) as a marker.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from gptlab.plotting import new_figure, save_figure


def curve(run: Path, bytes_per_token: float) -> tuple[list[float], list[float]]:
    seconds, bpb = [], []
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("val_loss") is not None and record.get("elapsed_s") is not None:
            seconds.append(record["elapsed_s"])
            bpb.append(record["val_loss"] / math.log(2) / bytes_per_token)
    return seconds, bpb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--bytes-per-token", type=float, required=True)
    parser.add_argument("--point", action="append", default=[], help="LABEL:SECONDS:BPB")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fig = new_figure(7, 4.5)
    ax = fig.subplots()
    for run in args.runs:
        seconds, bpb = curve(run, args.bytes_per_token)
        ax.plot([s / 60 for s in seconds], bpb, marker="o", label=run.name)
        ax.annotate(
            f"{bpb[-1]:.2f}", (seconds[-1] / 60, bpb[-1]), textcoords="offset points", xytext=(6, 4)
        )
    for point in args.point:
        label, seconds, bpb = point.rsplit(":", 2)
        ax.scatter([float(seconds) / 60], [float(bpb)], marker="x", s=60, label=label, zorder=3)
    ax.set_xlabel("training time (minutes, 2-core CPU)")
    ax.set_ylabel("held-out bits per byte (lower is better)")
    ax.set_title("Wikipedia (2015): bits per byte against training time")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
