"""What a fine-tuned folder says about itself: task.json (the task, its labels, the LoRA settings
and the base model), and whether it holds an unmerged LoRA adapter instead of whole weights.

Read by gptlab.checkpoints.open (an adapter folder opens as its base with the adapter applied)
and gptlab.checkpoints.finetuned (which writes these folders).
"""

from __future__ import annotations

from pathlib import Path

from gptlab.checkpoints.model_folder import WEIGHTS_FILE
from gptlab.errors import GptlabError
from gptlab.fileio import read_json

TASK_FILE = "task.json"
ADAPTER_DIR = "adapter"
KINDS = ("classifier", "instruct")


def read_task(directory: str | Path) -> dict:
    path = Path(directory) / TASK_FILE
    if not path.is_file():
        raise GptlabError(f"{directory} has no {TASK_FILE}: it is not a fine-tuned gptlab folder")
    task = read_json(path, "fine-tuning task")
    if task.get("kind") not in KINDS:
        raise GptlabError(f"{path} names no task kind ({' or '.join(KINDS)})")
    return task


def is_unmerged_adapter(directory: str | Path) -> bool:
    """A LoRA folder with no merged model.safetensors: its base must be loaded under it."""
    directory = Path(directory)
    return (directory / ADAPTER_DIR).is_dir() and not (directory / WEIGHTS_FILE).exists()


def adapter_base(directory: str | Path) -> str:
    """The base model an unmerged adapter belongs to, as task.json records it (hf:NAME or a
    folder)."""
    task = read_task(directory)
    if "base" not in task:
        raise GptlabError(
            f"{Path(directory) / TASK_FILE} does not say which base model the adapter belongs to"
        )
    return task["base"]
