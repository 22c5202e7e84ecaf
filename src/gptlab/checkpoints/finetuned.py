"""Where fine-tuning starts from, and the folder a fine-tuned model is saved in.

`--init` names the starting point: a gptlab model or training-run folder, or `hf:NAME` for Hugging
Face GPT-2 weights (a local folder or a hub name).

A fine-tuned folder:

    OUT/model.safetensors, config.json, tokenizer.json   the fine-tuned GPT: a standard model folder
                                                         (loads in sample, eval, inspect, export)
    OUT/task.json                  {"kind": "classifier" | "instruct", ...}: labels, max_length,
                                   pad_id, template, how it was trained, LoRA settings
    OUT/classifier_head.safetensors   a classifier's head: weight (n_classes, n_embd), bias
    OUT/adapter/                   LoRA runs: adapter.safetensors + adapter_config.json

A LoRA run keeps the base weights untouched and saves the small adapter on its own; task.json
then records the base (`--init`) it belongs to, and no model.safetensors is written unless the
adapter is merged (`--merge`, or later `gptlab finetune merge`), which writes the base with the
adapter folded in as a standard model folder.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gptlab.checkpoints.adapter_folder import (
    ADAPTER_DIR,
    TASK_FILE,
    read_task,
)
from gptlab.checkpoints.model_folder import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    is_model_dir,
    save_model,
)
from gptlab.checkpoints.open import open_model
from gptlab.checkpoints.run import refuse_in_run_folder
from gptlab.errors import GptlabError
from gptlab.fileio import (
    atomic_write,
    atomic_write_text,
    refuse_overlap,
    removed_on_failure,
)
from gptlab.model.gpt import GPT
from gptlab.model.lora import LoRAConfig, merge_lora, save_adapter
from gptlab.tokenizers.base import Tokenizer

HEAD_FILE = "classifier_head.safetensors"
OUTPUT_FILES = (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE, TASK_FILE, HEAD_FILE)
# What the fine-tuning runs write beside the model.
FINAL_METRICS_FILE = "metrics.json"
CONFUSION_TABLE_FILE = "confusion.md"
CONFUSION_PNG_FILE = "confusion.png"
ANSWERS_FILE = "test_answers.json"
# Everything a fine-tuned folder can hold: replaced as a whole by the next --overwrite.
OWNED = (
    *OUTPUT_FILES,
    ADAPTER_DIR,
    FINAL_METRICS_FILE,
    CONFUSION_TABLE_FILE,
    CONFUSION_PNG_FILE,
    ANSWERS_FILE,
)


def init_reference(spec: str) -> str:
    """How task.json records init: hub names as given, folders as absolute paths."""
    return spec if spec.startswith("hf:") else str(Path(spec).resolve())


def check_output_dir(out: str | Path, overwrite: bool, init: str) -> Path:
    """Refuse an out folder that holds an earlier result (unless overwrite), a training run, or the
    starting model itself. Nothing is deleted here: see writing_output."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GptlabError(f"out {out} is a file; give a folder")
    refuse_overlap(out, {"init model": init}, flag="out")
    refuse_in_run_folder(out)
    existing = [name for name in OWNED if (out / name).exists()]
    if existing and not overwrite:
        raise GptlabError(
            f"{out} already holds a model ({', '.join(existing)}); replace it (overwrite) or pick "
            "another output folder (out)"
        )
    return out


@contextlib.contextmanager
def writing_output(out: Path) -> Iterator[Path]:
    """A hidden folder beside `out` to write the result into; it replaces the earlier result in
    `out` only when the block ends without an error, so a kill or a failure before then leaves
    the earlier model as it was (and an interrupted one leaves only a hidden .partial folder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield stage
        publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, out: Path) -> None:
    """Move a complete result from `stage` into `out`: in one rename when `out` is new or empty,
    else entry by entry with task.json last, then drop what the earlier result had beyond it."""
    if not out.exists() or not any(out.iterdir()):
        if out.exists():
            out.rmdir()
        stage.rename(out)
        return
    names = sorted((p.name for p in stage.iterdir()), key=lambda name: name == TASK_FILE)
    for name in names:
        target = out / name
        if (stage / name).is_dir() and target.exists():
            aside = out / f".{name}.replaced"
            target.rename(aside)
            (stage / name).rename(target)
            shutil.rmtree(aside)
        else:
            os.replace(stage / name, target)
    for name in OWNED:
        stale = out / name
        if name not in names and stale.exists():
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def save_finetuned(
    out: str | Path,
    body: GPT,
    tokenizer: Tokenizer,
    task: dict,
    *,
    head: nn.Linear | None = None,
    lora: LoRAConfig | None = None,
    merge: bool = False,
) -> None:
    """Write a fine-tuned folder (see the module docstring); task.json is written last."""
    out = Path(out)
    task = dict(task)
    if lora is None:
        save_model(out, body, tokenizer)
    else:
        save_adapter(out / ADAPTER_DIR, body, lora)
        task["lora"] = lora.to_dict()
        task["merged"] = merge
        if merge:
            merged = copy.deepcopy(body)
            merge_lora(merged)
            save_model(out, merged, tokenizer)
    if head is not None:
        state = {
            "weight": head.weight.detach().cpu().contiguous(),
            "bias": head.bias.detach().cpu().contiguous(),
        }
        atomic_write(out / HEAD_FILE, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write_text(out / TASK_FILE, json.dumps(task, indent=2, ensure_ascii=False))


@dataclass
class FineTuned:
    body: GPT  # the language model, adapters applied when the LoRA adapter is not merged
    tokenizer: Tokenizer
    task: dict
    head: nn.Linear | None  # classifiers only


def load_finetuned(directory: str | Path, device: torch.device | str = "cpu") -> FineTuned:
    """Load a folder written by save_finetuned, in eval mode: its language model (the base with
    the adapter applied when the LoRA adapter is not merged; see open_model), task and head."""
    directory = Path(directory)
    if not directory.is_dir():
        raise GptlabError(f"checkpoint {directory} does not exist")
    task = read_task(directory)
    body, tokenizer = open_model(directory, device)
    head = None
    if task["kind"] == "classifier":
        head = load_head(directory, body.config.n_embd, len(task["labels"]))
    return FineTuned(
        body.to(device).eval(), tokenizer, task, None if head is None else head.to(device).eval()
    )


def load_head(directory: Path, n_embd: int, n_classes: int) -> nn.Linear:
    try:
        state = load_file(str(directory / HEAD_FILE), device="cpu")
    except FileNotFoundError:
        raise GptlabError(f"{directory} is a classifier but {HEAD_FILE} is missing") from None
    except SafetensorError as exc:
        raise GptlabError(f"{directory / HEAD_FILE} could not be read ({exc})") from None
    head = nn.Linear(n_embd, n_classes)
    if set(state) != {"weight", "bias"} or state["weight"].shape != head.weight.shape:
        raise GptlabError(
            f"{directory / HEAD_FILE} does not fit this model ({n_classes} classes, width {n_embd})"
        )
    head.load_state_dict(state)
    return head


def merge_checkpoint(directory: str | Path, out: str | Path | None = None) -> Path:
    """Fold a LoRA adapter into its base and save a standard model folder (in place by default)."""
    directory = Path(directory)
    loaded = load_finetuned(directory)
    task = loaded.task
    if task.get("lora") is None:
        raise GptlabError(f"{directory} was not trained with LoRA: there is no adapter to merge")
    out = directory if out is None else Path(out)
    in_place = out.resolve() == directory.resolve()  # this verb's default
    if not in_place:
        refuse_overlap(out, {"adapter folder": directory}, flag="out")
        refuse_in_run_folder(out)
        if is_model_dir(out):
            raise GptlabError(f"{out} already holds a model; pick another output folder (out)")
    with removed_on_failure(out):
        if not in_place:
            shutil.copytree(directory / ADAPTER_DIR, out / ADAPTER_DIR, dirs_exist_ok=True)
        body = copy.deepcopy(loaded.body)
        merge_lora(body)
        save_model(out, body, loaded.tokenizer)
        if loaded.head is not None and not in_place:
            shutil.copy2(directory / HEAD_FILE, out / HEAD_FILE)
        atomic_write_text(
            out / TASK_FILE, json.dumps({**task, "merged": True}, indent=2, ensure_ascii=False)
        )
    return out
