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
import pickle
import re
import shutil
from pathlib import Path

import torch

from gptlab.checkpoints.model_folder import CONFIG_FILE, WEIGHTS_FILE, save_model
from gptlab.errors import GptlabError
from gptlab.fileio import (
    CHECKPOINTS_DIR,
    holds_run_files,
    is_run_folder,
    read_json,
    writer_errors_as_os_errors,
)

STATE_FILE = "training_state.pt"
INFO_FILE = "checkpoint.json"
_NAME = re.compile(r"^step-(\d+)$")
_TEMP_PREFIX = ".incomplete-"  # a save in progress (or one a kill interrupted)
_DELETING_PREFIX = ".deleting-"  # a pruned checkpoint, renamed out of the namespace first
# What a complete checkpoint holds; a folder missing any of them is never listed.
CHECKPOINT_FILES = (WEIGHTS_FILE, CONFIG_FILE, STATE_FILE, INFO_FILE)


def refuse_in_run_folder(out: str | Path, flag: str = "out") -> None:
    """Refuse to write a model into a training run folder or anywhere under one (a step-N
    checkpoint): the run's own checkpoints would be replaced by a folder it cannot resume from."""
    target = Path(out).resolve()
    for folder in (target, *target.parents):
        named = folder == target  # out itself: any sign of a run; a folder above: its files
        if is_run_folder(folder) if named else holds_run_files(folder):
            where = "is" if folder == target else f"lies in {folder},"
            raise GptlabError(
                f"{flag} {out} {where} a training run folder; write the model somewhere else"
            )


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def is_complete(checkpoint: Path) -> bool:
    """Every file of a checkpoint is there and its info reads back (a damaged one is skipped)."""
    if not all((checkpoint / name).is_file() for name in CHECKPOINT_FILES):
        return False
    try:
        read_info(checkpoint)
    except GptlabError:
        return False
    return True


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first; incomplete or damaged folders are skipped."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _NAME.match(p.name)) and p.is_dir() and is_complete(p)
    ]
    return [p for _, p in sorted(found)]


def read_info(checkpoint: Path) -> dict:
    """checkpoint.json: step, tokens, elapsed_s, val_loss, best_val_loss."""
    info = read_json(checkpoint / INFO_FILE, "checkpoint info")
    if not isinstance(info.get("step"), int):
        raise GptlabError(
            f"{checkpoint / INFO_FILE} is damaged (no step); delete that checkpoint folder"
        )
    return info


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
    remove_leftovers(folder)

    final = folder / checkpoint_name(info["step"])
    temp = folder / f"{_TEMP_PREFIX}{final.name}"
    try:
        save_model(temp, model, tokenizer)
        with writer_errors_as_os_errors(temp / STATE_FILE):
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
    """Delete all but the newest `keep_last` checkpoints and the best one.

    Each is first renamed out of the step-N namespace (one atomic step), then deleted: a kill
    in the middle leaves a hidden .deleting- folder, never a half-deleted step-N that still
    looks like a checkpoint.
    """
    checkpoints = list_checkpoints(run_dir)
    keep = set(checkpoints[-keep_last:])
    best = best_checkpoint(run_dir)
    if best is not None:
        keep.add(best)
    for path in checkpoints:
        if path not in keep:
            doomed = path.with_name(f"{_DELETING_PREFIX}{path.name}")
            path.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    remove_leftovers(Path(run_dir) / CHECKPOINTS_DIR, saves=False)


def remove_leftovers(folder: Path, saves: bool = True) -> None:
    """Remove what a kill left: pruned folders not yet deleted, step-N folders without weights
    (nothing in them is worth keeping), and (saves=True, only before a new save) interrupted
    saves. A step-N folder that has weights but is otherwise damaged is skipped by
    list_checkpoints and left for its owner to look at."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        leftover = path.name.startswith(_DELETING_PREFIX) or (
            saves and path.name.startswith(_TEMP_PREFIX)
        )
        weightless = _NAME.match(path.name) and path.is_dir() and not (path / WEIGHTS_FILE).exists()
        if leftover or weightless:
            shutil.rmtree(path, ignore_errors=True)


def load_training_state(checkpoint: Path) -> dict:
    """training_state.pt, read with weights_only=True: a file that holds code is refused."""
    path = checkpoint / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GptlabError(
            f"{checkpoint} has no {STATE_FILE}: it is a model folder, not a resumable checkpoint"
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GptlabError(
            f"{path} is damaged or not a gptlab training state ({reason[:200]}); resume from an "
            "earlier checkpoint (delete this one) or train afresh (overwrite)"
        ) from None
    expected = {"optimizer", "scaler", "world_size", "ranks"}
    if not isinstance(state, dict) or not expected <= state.keys():
        raise GptlabError(
            f"{path} is not a gptlab training state (it lacks {', '.join(sorted(expected))}); "
            "resume from an earlier checkpoint (delete this one) or train afresh (overwrite)"
        )
    return state
