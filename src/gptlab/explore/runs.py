"""The training-run view: a run folder's metrics and samples, read the way the trainer wrote them.

The page polls: it sends how many metric records it already has and gets only the newer ones,
so a run that is training right now draws its curves as they grow. metrics.jsonl is read with
gptlab.train.metrics.read_metrics (a torn last line, the one being written, is skipped until it
is whole) and samples.txt with gptlab.train.run_folder.read_samples.
"""

from __future__ import annotations

from gptlab.errors import require
from gptlab.explore.session import Explorer
from gptlab.train.metrics import read_metrics
from gptlab.train.plots import smooth
from gptlab.train.run_folder import read_samples

# What the page draws against tokens; any other number a record holds is sent too.
CURVES = ("train_loss", "val_loss", "lr", "grad_norm", "tokens_per_s")
SMOOTHING = 0.9  # as loss.png draws the train loss (gptlab.train.plots)


def run_view(explorer: Explorer, since: int = 0) -> dict:
    """Metric records from index `since` on, how many there are in all, and every sample."""
    require(
        explorer.run_dir is not None,
        f"{explorer.name} is a model folder, not a training run: it has no curves (name a run "
        "folder on the command line)",
    )
    require(since >= 0, f"since must be >= 0, got {since}")
    records = read_metrics(explorer.run_dir)
    add_smoothed_loss(records)
    return {
        "name": explorer.name,
        "total": len(records),
        "since": min(since, len(records)),
        "records": records[since:],
        "samples": read_samples(explorer.run_dir),
        "curves": list(CURVES),
    }


def add_smoothed_loss(records: list[dict]) -> None:
    """Each record with a train loss gets "train_loss_smoothed", over the whole run so far (so a
    page that fetched only the newest records still draws one continuous curve)."""
    with_loss = [r for r in records if isinstance(r.get("train_loss"), int | float)]
    for record, value in zip(
        with_loss, smooth([r["train_loss"] for r in with_loss], SMOOTHING), strict=True
    ):
        record["train_loss_smoothed"] = value
