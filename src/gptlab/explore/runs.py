"""The training-run view: a run folder's metrics and samples, read the way the trainer wrote them.

The page polls: it sends how many metric records it already has and gets only the newer ones,
so a run that is training right now draws its curves as they grow. metrics.jsonl is read
incrementally (MetricsTail): each poll reads only the bytes appended since the last one, so a
poll costs the new lines, not the whole log (a 300k-record log took 2.7 s to re-read). A torn
last line, the one being written, waits until it is whole. The answer says whether the run is
still training (gptlab.train.run_folder.is_training); the page stops polling once it is not.
samples.txt is read with gptlab.train.run_folder.read_samples.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from gptlab.errors import GptlabError, require
from gptlab.explore.session import Explorer
from gptlab.fileio import METRICS_LOG_FILE, loads_json
from gptlab.train.plots import smooth, smoothing_state
from gptlab.train.run_folder import is_training, read_samples

# What the page draws against tokens; any other number a record holds is sent too.
CURVES = ("train_loss", "val_loss", "lr", "grad_norm", "tokens_per_s")
SMOOTHING = 0.9  # as loss.png draws the train loss (gptlab.train.plots)


def run_view(explorer: Explorer, since: int = 0) -> dict:
    """Metric records from index `since` on, how many there are in all, every sample, and
    whether the run is still training."""
    require(
        explorer.run_dir is not None,
        f"{explorer.name} is a model folder, not a training run: it has no curves (name a run "
        "folder on the command line)",
    )
    require(since >= 0, f"since must be >= 0, got {since}")
    tail = _TAILS.setdefault(str(Path(explorer.run_dir).resolve()), MetricsTail(explorer.run_dir))
    training = is_training(explorer.run_dir)  # before reading: lines logged after it are kept
    records = tail.read()
    return {
        "name": explorer.name,
        "total": len(records),
        "since": min(since, len(records)),
        "records": records[since:],
        "samples": read_samples(explorer.run_dir),
        "curves": list(CURVES),
        "training": training,
    }


class MetricsTail:
    """A run's metrics.jsonl, read from where the last read stopped.

    Records get "train_loss_smoothed", over the whole run so far (so a page that fetched only
    the newest records still draws one continuous curve). A log replaced or cut (a run started
    again with --overwrite, or resumed: both rewrite the file) is read again from the start.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_LOG_FILE
        self.lock = threading.Lock()  # polls run in FastAPI's thread pool
        self.restart(None)

    def restart(self, identity) -> None:
        self.identity = identity  # (device, inode) of the file read so far
        self.offset = 0  # bytes of whole lines read
        self.lines = 0
        self.records: list[dict] = []
        self.average = 0.0  # the smoothing's state (gptlab.train.plots.smooth)
        self.losses = 0

    def read(self) -> list[dict]:
        with self.lock:
            try:
                status = self.path.stat()
            except FileNotFoundError:
                raise GptlabError(
                    f"{self.path.parent} has no {METRICS_LOG_FILE}: is it a gptlab training run folder?"
                ) from None
            identity = (status.st_dev, status.st_ino)
            if identity != self.identity or status.st_size < self.offset:
                self.restart(identity)
            with self.path.open("rb") as f:
                f.seek(self.offset)
                new = f.read(status.st_size - self.offset)
            whole = new[: new.rfind(b"\n") + 1]  # a torn last line waits for its newline
            added = [self.parse(line) for line in whole.splitlines()]
            self.offset += len(whole)
            added = [record for record in added if record is not None]
            self.add_smoothed_loss(added)
            self.records.extend(added)
            return self.records

    def parse(self, line: bytes) -> dict | None:
        self.lines += 1
        if not line.strip():
            return None
        try:
            record = loads_json(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GptlabError(
                f"{self.path} line {self.lines}: not valid JSON ({getattr(exc, 'msg', exc)})"
            ) from None
        if not isinstance(record, dict):
            raise GptlabError(f"{self.path} line {self.lines}: expected a JSON object")
        return record

    def add_smoothed_loss(self, records: list[dict]) -> None:
        with_loss = [r for r in records if isinstance(r.get("train_loss"), int | float)]
        if not with_loss:
            return
        values = smooth([r["train_loss"] for r in with_loss], SMOOTHING, self.average, self.losses)
        for record, value in zip(with_loss, values, strict=True):
            record["train_loss_smoothed"] = value
        self.losses += len(with_loss)
        self.average = smoothing_state(values, SMOOTHING, self.losses)


_TAILS: dict[str, MetricsTail] = {}  # one per run folder, for the server's life
