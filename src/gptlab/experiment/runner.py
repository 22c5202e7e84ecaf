"""Training an experiment's runs in turn: skipping finished ones, one progress bar over the grid."""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from gptlab.errors import GptlabError
from gptlab.experiment.grid import PlannedRun
from gptlab.fileio import atomic_write_text, read_json
from gptlab.train import train
from gptlab.train.config import RunConfig

RESULT_FILE = "result.json"
TRAIN_LOG_FILE = "train.log"


@dataclass
class RunResult:
    label: str  # the combination's label
    seed: int
    val_loss: float | None
    num_parameters: int
    tokens_per_s: float
    wall_seconds: float
    steps: int
    tokens: int


def finished_result(run: PlannedRun) -> RunResult | None:
    """The result of a run finished earlier with the same config, or None when it must (re)train."""
    path = run.run_dir / RESULT_FILE
    if not path.is_file():
        return None
    saved = read_json(path, "experiment result")
    config, result = saved.get("config"), saved.get("result")
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict)) or not isinstance(
        result, dict
    ):
        raise GptlabError(f"{path} is damaged; delete {run.run_dir} to train that run again")
    if _comparable(saved["config"]) != _comparable(run.config.to_dict()):
        raise GptlabError(
            f"{run.run_dir} holds a finished run with a different config; use another output folder (out) "
            "or delete that folder"
        )
    try:
        return RunResult(**saved["result"])
    except TypeError:
        raise GptlabError(
            f"{path} is damaged; delete {run.run_dir} to train that run again"
        ) from None


def _comparable(config: dict) -> dict:
    """The config without what the trainer derives from the data (the vocabulary size)."""
    return {**config, "model": {k: v for k, v in config["model"].items() if k != "vocab_size"}}


def train_planned_run(run: PlannedRun, on_step=None) -> RunResult:
    # The trainer's own report (header, samples, summary) goes to the run's train.log so the
    # terminal shows the grid's progress; on failure it is shown, as it may explain the failure.
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            # overwrite: an unfinished run (no result.json) of an interrupted experiment starts afresh.
            trained = train(
                run.config, run.run_dir, overwrite=True, on_step=on_step, show_progress=False
            )
    except BaseException:
        print(log.getvalue(), end="")
        raise
    atomic_write_text(run.run_dir / TRAIN_LOG_FILE, log.getvalue())
    result = RunResult(
        label=run.combination.label,
        seed=run.seed,
        val_loss=trained.val_loss,
        num_parameters=trained.num_parameters,
        tokens_per_s=trained.tokens_per_s,
        wall_seconds=trained.wall_seconds,
        steps=trained.steps,
        tokens=trained.tokens,
    )
    atomic_write_text(
        run.run_dir / RESULT_FILE,
        json.dumps({"config": run.config.to_dict(), "result": asdict(result)}, indent=2) + "\n",
    )
    return result


def budget_fraction(record: dict, config: RunConfig) -> float:
    """How far a run is through its budget after the step `record` logs, in [0, 1]."""
    fractions = []
    if config.train.max_steps is not None:
        fractions.append(record["step"] / config.train.max_steps)
    if config.train.max_seconds is not None:
        fractions.append(record["elapsed_s"] / config.train.max_seconds)
    return min(max(fractions), 1.0)


def run_experiment(planned: list[PlannedRun], show_progress: bool = True) -> list[RunResult]:
    """Train every planned run not finished yet (in grid order), returning all results."""
    results: dict[Path, RunResult] = {}
    pending = []
    for run in planned:
        earlier = finished_result(run)
        if earlier is None:
            pending.append(run)
        else:
            results[run.run_dir] = earlier
    if results and show_progress:
        print(f"skipping {len(results)} finished run(s); {len(pending)} to train")
    # One bar over the whole grid, advanced within each run by its budget fraction, so the ETA
    # is meaningful from the first run on.
    bar = tqdm(
        total=len(pending),
        disable=not show_progress or not pending,
        bar_format="{desc}{percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
    )
    with bar:
        for index, run in enumerate(pending):
            bar.set_description(
                f"run {index + 1}/{len(pending)} {run.combination.label} seed {run.seed}"
            )

            def advance(record: dict, done: int = index, config: RunConfig = run.config) -> None:
                # update() (unlike setting n) redraws at most every mininterval: cheap per step.
                bar.update(done + budget_fraction(record, config) - bar.n)

            started = time.perf_counter()
            result = train_planned_run(run, on_step=advance)
            results[run.run_dir] = result
            bar.update(index + 1 - bar.n)
            if show_progress:
                loss = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
                bar.write(
                    f"{run.combination.label} seed {run.seed}: val loss {loss}, "
                    f"{time.perf_counter() - started:.1f} s"
                )
    return [results[run.run_dir] for run in planned]
