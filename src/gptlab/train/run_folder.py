"""The run folder: what it holds, and when a new run may use it.

    RUN/config.toml      the resolved run configuration (complete; `--config RUN/config.toml`
                         reproduces the run)
    RUN/metrics.jsonl    one JSON line per logged step (gptlab.train.metrics)
    RUN/loss.png         the loss curves, redrawn at every eval
    RUN/samples.txt      text sampled during training, newest last
    RUN/checkpoints/     resumable checkpoints (gptlab.checkpoints.run)
    RUN/tensorboard/     TensorBoard event files, when asked for
    RUN/.gptlab.lock     locked while a process trains here (holds its pid)

A folder that already holds a run is never silently reused: --resume continues it (same model and
data required), --overwrite deletes that run's files and starts again; anything else is refused
before anything is written. A folder another gptlab process is training in is refused too.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gptlab.checkpoints.run import CHECKPOINTS_DIR, latest_checkpoint
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text, read_text, remove_entries
from gptlab.train.config import RunConfig, build_run_config
from gptlab.train.metrics import METRICS_LOG_FILE
from gptlab.train.plots import LOSS_PLOT_FILE

RUN_CONFIG_FILE = "config.toml"
SAMPLES_FILE = "samples.txt"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".gptlab.lock"
RUN_FILES = (
    RUN_CONFIG_FILE,
    METRICS_LOG_FILE,
    LOSS_PLOT_FILE,
    SAMPLES_FILE,
    CHECKPOINTS_DIR,
    TENSORBOARD_DIR,
    "wandb",
)


SAMPLE_HEADER = re.compile(r"=== step (\d+) ===")


def sample_entries(text: str) -> list[tuple[int, str]]:
    """samples.txt's entries as (step, entry text including its header line), in file order."""
    entries = re.split(r"(?m)^(?==== step \d+ ===$)", text)
    return [(int(m[1]), e) for e in entries if (m := SAMPLE_HEADER.match(e))]


def read_samples(run_dir: str | Path) -> list[dict]:
    """The samples a run wrote, oldest first: [{"step": N, "text": ...}]; none if it wrote none."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    text = read_text(path, "samples file", allow_empty=True)
    return [
        {"step": step, "text": entry.partition("\n")[2].removesuffix("\n\n")}
        for step, entry in sample_entries(text)
    ]


def truncate_samples(run_dir: Path, last_step: int) -> None:
    """Drop the samples written after `last_step` (a resumed run samples those steps again), so
    samples.txt stays one entry per step, in order."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.is_file():
        return
    entries = sample_entries(path.read_text(encoding="utf-8"))
    atomic_write_text(path, "".join(e for step, e in entries if step <= last_step))


def holds_run(folder: Path) -> bool:
    return (folder / RUN_CONFIG_FILE).is_file() or (folder / CHECKPOINTS_DIR).is_dir()


def read_run_config(folder: str | Path) -> RunConfig:
    return build_run_config(config_file=Path(folder) / RUN_CONFIG_FILE)


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """The keys a checkpoint depends on whose values differ: the model and data (vocab_size is
    derived from the data), and train.optimizer (the checkpoint holds that optimizer's state)."""
    old_dict, new_dict = old.to_dict(), new.to_dict()
    keys = [(section, key) for section in ("model", "data") for key in new_dict[section]]
    differences = []
    for section, key in [*keys, ("train", "optimizer")]:
        value = new_dict[section][key]
        if key != "vocab_size" and old_dict[section].get(key) != value:
            differences.append(f"{section}.{key} ({old_dict[section].get(key)!r} -> {value!r})")
    return differences


def check_run_folder(
    folder: Path, config: RunConfig, *, resume: bool, overwrite: bool
) -> Path | None:
    """Decide whether this run may use `folder`, writing nothing. Returns the checkpoint to resume from.

    Raises GptlabError for: both settings; a folder holding a run without resume/overwrite;
    resuming a different model, data or optimizer, or a folder with no checkpoint; a non-empty folder that
    is not a run (never deleted, even with overwrite). Messages name the settings (resume,
    overwrite, out), not the command line's flags.
    """
    if resume and overwrite:
        raise GptlabError("resume and overwrite contradict each other; pick one")
    if not folder.exists():
        if resume:
            raise GptlabError(f"nothing to resume: {folder} does not exist")
        return None
    if not folder.is_dir():
        raise GptlabError(f"{folder} is a file, not a folder; pick another output folder (out)")
    if not holds_run(folder):
        if any(path.name != LOCK_FILE for path in folder.iterdir()):
            raise GptlabError(
                f"{folder} is not empty and holds no gptlab run; pick another output folder (out)"
            )
        if resume:
            raise GptlabError(f"nothing to resume: {folder} is empty")
        return None

    if overwrite:
        return None
    differences = config_differences(read_run_config(folder), config)
    if not resume:
        what = "a different run (" + ", ".join(differences[:3]) + ")" if differences else "a run"
        raise GptlabError(
            f"{folder} already holds {what}; continue it (resume), replace it (overwrite) "
            "or pick another output folder (out)"
        )
    if differences:
        raise GptlabError(
            f"cannot resume {folder} with a different model, data or optimizer: "
            f"{', '.join(differences[:3])}; "
            "resume with the run's own config (its config.toml) or start a new run"
        )
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        raise GptlabError(f"{folder} has no checkpoint to resume from; start it afresh (overwrite)")
    return checkpoint


def clear_run(folder: Path) -> None:
    """Delete the files a run wrote (and nothing else) so that the folder can start a new run."""
    remove_entries(folder, RUN_FILES)


def lock_run_folder(folder: Path) -> IO[str] | None:
    """Lock `folder` for this process's run; the lock lasts until the returned file is closed.

    An advisory flock: the OS drops it when the process ends, however it ends, so a killed run
    never leaves a stale lock. Without fcntl (Windows) nothing is locked and None is returned.
    """
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(folder / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip()
        handle.close()
        raise GptlabError(
            f"{folder} is in use by another gptlab process (pid {owner or 'unknown'}); "
            "wait for it to finish or pick another output folder (out)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def is_training(folder: str | Path) -> bool:
    """Whether a process is training in `folder` now: the pid its lock file names is alive.

    Read, not locked: taking the lock even for a moment could refuse a run starting then."""
    try:
        owner = int((Path(folder) / LOCK_FILE).read_text(encoding="utf-8").strip())
        os.kill(owner, 0)
    except (OSError, ValueError):  # no lock file, no pid in it, or no such process
        return False
    return True


@dataclass
class RunFolderClaim:
    """The outcome of claim_run_folder: the checkpoint to resume from, and rank 0's hold on the
    folder (its lock, and whether this run created the folder)."""

    resume_from: Path | None
    lock: IO[str] | None
    created: bool

    def give_up(self, run_dir: Path) -> None:
        """Release the folder after a failure before training: a folder this run created goes
        again (it holds only the lock file), so a refused run leaves nothing behind."""
        if self.lock is None:
            return
        self.lock.close()
        if self.created:
            (run_dir / LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty after all: leave it
                run_dir.rmdir()


def claim_run_folder(
    run_dir: Path, config: RunConfig, *, resume: bool, overwrite: bool, is_main: bool
) -> RunFolderClaim:
    """Check the run folder once and lock it on rank 0.

    Every rank checks the folder (writing nothing), so a refusal stops all of them alike; rank 0
    (is_main) then locks it at once, before the data is prepared, so that a second process (the same
    command started twice) is refused instead of clearing or interleaving this run.
    """
    resume_from = check_run_folder(run_dir, config, resume=resume, overwrite=overwrite)
    if not is_main:
        return RunFolderClaim(resume_from, None, created=False)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = lock_run_folder(run_dir)
    except BaseException:
        RunFolderClaim(resume_from, None, created).give_up(run_dir)
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise
    return RunFolderClaim(resume_from, lock, created)
