"""`gptlab explore`'s run view: the cost of one poll of /api/run on a long metrics log, reading
the whole log again (as the view did before issue 27) against reading only the lines appended
since the last poll (gptlab.explore.runs.MetricsTail).

    python benchmarks/explore_run_poll.py [--records 300000] [--new 10] [--repeats 3]

The log is written like the trainer's (tests/explore_testing.metrics_records); each poll appends
`--new` records first, as a run that is training does between two polls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gptlab.explore import runs
from gptlab.train.metrics import read_metrics
from gptlab.train.plots import smooth

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from explore_testing import metrics_records  # noqa: E402


class RunExplorer:  # what run_view reads of an Explorer
    name = "run"

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir


def whole_log_poll(run_dir: Path) -> int:
    """The former view: every record parsed and the train loss smoothed over all of them."""
    records = read_metrics(run_dir)
    smooth([r["train_loss"] for r in records if "train_loss" in r], runs.SMOOTHING)
    return len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--new", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    total = args.records + args.new * 2 * args.repeats
    records = [json.dumps(r) + "\n" for r in metrics_records(total)]
    run_dir = Path(tempfile.mkdtemp())
    log = run_dir / "metrics.jsonl"
    log.write_text("".join(records[: args.records]))
    written = args.records

    def append() -> None:
        nonlocal written
        with log.open("a") as f:
            f.write("".join(records[written : written + args.new]))
        written += args.new

    explorer = RunExplorer(run_dir)
    start = time.perf_counter()
    first = runs.run_view(explorer)
    first_s = time.perf_counter() - start
    whole, tail = [], []
    known = first["total"]
    for _ in range(args.repeats):
        append()
        start = time.perf_counter()
        assert whole_log_poll(run_dir) == written
        whole.append(time.perf_counter() - start)
        append()
        start = time.perf_counter()
        answer = runs.run_view(explorer, since=known)
        tail.append(time.perf_counter() - start)
        assert answer["total"] == written and len(answer["records"]) == written - known
        known = answer["total"]
    print(f"{args.records:,} records, {args.new} new per poll, median of {args.repeats}")
    print(f"first poll (reads the whole log once):  {first_s:8.3f} s")
    print(f"a poll reading the whole log again:     {statistics.median(whole):8.3f} s")
    print(f"a poll reading only the new lines:      {statistics.median(tail) * 1000:8.2f} ms")


if __name__ == "__main__":
    main()
