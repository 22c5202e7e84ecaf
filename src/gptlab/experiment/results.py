"""The experiment's results: a table per combination (Markdown, CSV) and the overlaid loss curves."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from gptlab.experiment.grid import PlannedRun
from gptlab.experiment.runner import RunResult
from gptlab.fileio import atomic_write_text
from gptlab.tables import markdown_table
from gptlab.train.plots import plot_runs

RESULTS_MARKDOWN = "results.md"
RESULTS_CSV = "results.csv"
LOSS_CURVES_FILE = "loss_curves.png"


@dataclass
class CombinationSummary:
    label: str
    seeds: int
    val_loss_mean: float | None
    val_loss_std: float | None  # sample standard deviation over seeds (0 for a single seed)
    val_loss_min: float | None
    val_loss_max: float | None
    num_parameters: int
    tokens_per_s: float  # mean over seeds
    wall_seconds: float  # mean over seeds


def summarize(results: list[RunResult]) -> list[CombinationSummary]:
    by_label: dict[str, list[RunResult]] = {}
    for result in results:
        by_label.setdefault(result.label, []).append(result)
    summaries = []
    for label, runs in by_label.items():
        losses = [r.val_loss for r in runs if r.val_loss is not None]
        summaries.append(
            CombinationSummary(
                label=label,
                seeds=len(runs),
                val_loss_mean=statistics.fmean(losses) if losses else None,
                val_loss_std=(statistics.stdev(losses) if len(losses) > 1 else 0.0)
                if losses
                else None,
                val_loss_min=min(losses, default=None),
                val_loss_max=max(losses, default=None),
                num_parameters=runs[0].num_parameters,
                tokens_per_s=statistics.fmean(r.tokens_per_s for r in runs),
                wall_seconds=statistics.fmean(r.wall_seconds for r in runs),
            )
        )
    return summaries


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def results_markdown(summaries: list[CombinationSummary]) -> str:
    headers = [
        "combination",
        "seeds",
        "val loss (mean ± std)",
        "val loss min-max",
        "parameters",
        "tokens/s",
        "wall time (s)",
    ]
    rows = []
    for s in summaries:
        loss = (
            "n/a"
            if s.val_loss_mean is None
            else f"{s.val_loss_mean:.4f} ± {_number(s.val_loss_std, 4)}"
        )
        spread = (
            "n/a"
            if s.val_loss_min is None
            else f"{s.val_loss_min:.4f}-{_number(s.val_loss_max, 4)}"
        )
        rows.append(
            [
                s.label,
                s.seeds,
                loss,
                spread,
                f"{s.num_parameters:,}",
                f"{s.tokens_per_s:,.0f}",
                f"{s.wall_seconds:.1f}",
            ]
        )
    return markdown_table(headers, rows)


def results_csv(summaries: list[CombinationSummary]) -> str:
    buffer = io.StringIO()
    fields = list(CombinationSummary.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for summary in summaries:
        writer.writerow(asdict(summary))
    return buffer.getvalue()


def write_results(
    out: str | Path, planned: list[PlannedRun], results: list[RunResult]
) -> list[CombinationSummary]:
    """results.md, results.csv and loss_curves.png in `out`; returns the summaries."""
    out = Path(out)
    summaries = summarize(results)
    atomic_write_text(out / RESULTS_MARKDOWN, results_markdown(summaries))
    atomic_write_text(out / RESULTS_CSV, results_csv(summaries))
    # One curve pair per combination (its first seed): every seed of every combination would
    # bury the comparison under a legend of 2 x runs entries.
    first_of_each = {}
    for run in planned:
        first_of_each.setdefault(run.combination.label, run.run_dir)
    plot_runs(list(first_of_each.values()), out / LOSS_CURVES_FILE, labels=list(first_of_each))
    return summaries
