"""Training checkpoints inside a run folder, written atomically as a unit.

    RUN/checkpoints/step-0000500/
        model.safetensors, config.json, tokenizer.json   a model folder (gptlab.checkpoints.model_folder)
        training_state.pt    optimizer, grad scaler, RNG states, loader position (tensors and
                             plain values only: read back with torch.load(weights_only=True))
        checkpoint.json      step, tokens, elapsed seconds, val loss (for people and for choosing)

A checkpoint is written into a hidden temporary folder and renamed into place once complete, so a
kill during a save leaves the previous checkpoints as they were; leftovers of an interrupted save
are ignored and removed by the next save. The newest `keep_last` checkpoints are kept, plus the
one with the lowest val loss.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.errors import GptlabError

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "training_state.pt"
INFO_FILE = "checkpoint.json"
_NAME = re.compile(r"^step-(\d+)$")
_TEMP_PREFIX = ".incomplete-"


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found)]


def read_info(checkpoint: Path) -> dict:
    return json.loads((checkpoint / INFO_FILE).read_text(encoding="utf-8"))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the lowest recorded val loss (None if no checkpoint has one)."""
    scored = [(read_info(p).get("val_loss"), p) for p in list_checkpoints(run_dir)]
    scored = [(loss, p) for loss, p in scored if loss is not None]
    return min(scored, key=lambda item: item[0])[1] if scored else None


def find_run_checkpoint(run_dir: str | Path) -> Path | None:
    """The model a run folder stands for: its best checkpoint, else its latest, else None."""
    return best_checkpoint(run_dir) or latest_checkpoint(run_dir)


def save_checkpoint(
    run_dir: str | Path,
    *,
    model: torch.nn.Module,
    tokenizer,
    info: dict,
    training_state: dict,
    keep_last: int,
) -> Path:
    """Write checkpoint `info["step"]` as one unit, then prune old ones. Returns its folder.

    `model` must be the plain GPT (not wrapped by DDP or torch.compile), so that parameter names
    carry no wrapper prefixes.
    """
    folder = Path(run_dir) / CHECKPOINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(f"{_TEMP_PREFIX}*"):  # from a save that was interrupted
        shutil.rmtree(leftover, ignore_errors=True)

    final = folder / checkpoint_name(info["step"])
    temp = folder / f"{_TEMP_PREFIX}{final.name}"
    try:
        save_model(temp, model, tokenizer)
        torch.save(training_state, temp / STATE_FILE)
        (temp / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        if final.exists():  # the same step saved again (e.g. a best checkpoint at the last step)
            shutil.rmtree(final)
        temp.rename(final)  # the moment the checkpoint comes into existence
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    prune_checkpoints(run_dir, keep_last)
    return final


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    checkpoints = list_checkpoints(run_dir)
    keep = set(checkpoints[-keep_last:])
    best = best_checkpoint(run_dir)
    if best is not None:
        keep.add(best)
    for path in checkpoints:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)


def load_training_state(checkpoint: Path) -> dict:
    try:
        return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GptlabError(
            f"{checkpoint} has no {STATE_FILE}: it is a model folder, not a resumable checkpoint"
        ) from None
