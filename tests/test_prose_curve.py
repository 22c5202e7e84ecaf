"""benchmarks/prose_curve.py: several runs (10-, 30-, 60-minute budgets) on one picture, each
curve's bits per byte computed from the run's own val loss, and bad input refused in one line."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from gptlab.errors import GptlabError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "prose_curve.py"
spec = importlib.util.spec_from_file_location("prose_curve", SCRIPT)
prose_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prose_curve)


def fake_run(folder: Path, minutes: int, losses: list[float]) -> Path:
    """A run folder as `gptlab train` leaves it: config.toml and metrics.jsonl with evaluations
    (and training lines without one, which the curve skips)."""
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(f"[train]\nmax_seconds = {minutes * 60.0}\n")
    lines = []
    for i, loss in enumerate(losses, start=1):
        seconds = minutes * 60 * i / len(losses)
        lines.append({"step": i, "elapsed_s": seconds - 1, "train_loss": loss + 0.1})
        lines.append({"step": i, "elapsed_s": seconds, "train_loss": loss, "val_loss": loss})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def test_each_budget_is_its_own_labelled_curve(tmp_path):
    runs = [
        fake_run(tmp_path / "prose-10m", 10, [6.0, 5.0]),
        fake_run(tmp_path / "prose-30m", 30, [6.0, 5.0, 4.6]),
    ]
    seconds, bpb = prose_curve.curve(runs[1], 3.8)
    assert seconds == [600.0, 1200.0, 1800.0]  # only the evaluations
    assert bpb == pytest.approx([loss / math.log(2) / 3.8 for loss in (6.0, 5.0, 4.6)])
    assert prose_curve.run_label(runs[1]) == "prose-30m (30-min budget)"
    out = tmp_path / "curve.png"
    args = [*map(str, runs), "--bytes-per-token", "3.8", "--point", "nanoGPT:600:2.078"]
    assert prose_curve.main([*args, "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys):
    good = fake_run(tmp_path / "good", 10, [5.0])
    (tmp_path / "empty").mkdir()
    out = tmp_path / "curve.png"
    assert (
        prose_curve.main(
            [str(good), str(tmp_path / "empty"), "--bytes-per-token", "3.8", "--out", str(out)]
        )
        == 1
    )
    assert "has no metrics.jsonl" in capsys.readouterr().err
    assert (
        prose_curve.main(
            [str(good), "--bytes-per-token", "3.8", "--point", "nanoGPT:2.0", "--out", str(out)]
        )
        == 1
    )
    assert "write LABEL:SECONDS:BPB" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(GptlabError, match="no evaluation yet"):
        (tmp_path / "noeval").mkdir()
        (tmp_path / "noeval" / "metrics.jsonl").write_text('{"step": 1, "train_loss": 9.0}\n')
        prose_curve.curve(tmp_path / "noeval", 3.8)
