"""open_model: one way to open any model a user can name.

    PATH                a gptlab model folder (model.safetensors + config.json + tokenizer.json)
    RUN                 a training run folder: its best checkpoint, else its latest
    RUN@best, RUN@last  that checkpoint of a run; RUN@N the checkpoint of step N
    FOLDER              a fine-tuned folder (its language model), or an unmerged LoRA folder:
                        its base (task.json) with the adapter applied
    HF_FOLDER           a Hugging Face GPT-2 folder (config.json with model_type gpt2)
    hf:NAME             Hugging Face GPT-2 weights by hub name or folder (gptlab.checkpoints.hf_hub)
    preset:NAME         a randomly initialised model of a GPT-2-vocabulary preset (seed 0)

`load_model` (the public `gptlab.load_model`), every CLI verb, fine-tuning's --init and the
fine-tuned folders' loader all open models through it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptlab.checkpoints.adapter_folder import ADAPTER_DIR, adapter_base, is_unmerged_adapter
from gptlab.checkpoints.hf_hub import load_hf_model
from gptlab.checkpoints.model_folder import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    is_model_dir,
    load_model_folder,
)
from gptlab.checkpoints.run import (
    CHECKPOINTS_DIR,
    best_checkpoint,
    checkpoint_name,
    find_run_checkpoint,
    is_run_folder,
    latest_checkpoint,
)
from gptlab.errors import GptlabError
from gptlab.fileio import read_json
from gptlab.model.config import model_preset
from gptlab.model.gpt import GPT
from gptlab.model.hf import GPT2_VOCAB_SIZE
from gptlab.model.lora import load_adapter
from gptlab.model.params import require_model_fits
from gptlab.tokenizers.base import GPT2Tokenizer, Tokenizer

RETRIES_WHILE_PRUNED = 3


def open_model(
    spec: str | Path, device: str | torch.device = "cpu", *, require_tokenizer: bool = True
) -> tuple[GPT, Tokenizer | None]:
    """(model, tokenizer) for `spec` (see the module docstring), on `device`.

    require_tokenizer: refuse a folder without tokenizer.json (text in, text out needs one);
    with False such a folder gives (model, None).
    """
    spec = str(spec)
    if spec.startswith("hf:"):
        model, tokenizer = load_hf_model(spec[3:])
    elif spec.startswith("preset:"):
        model, tokenizer = random_preset_model(spec[len("preset:") :], device)
    else:
        model, tokenizer = open_folder(spec, device)
    if tokenizer is None and require_tokenizer:
        raise GptlabError(f"{spec} has no {TOKENIZER_FILE}; it cannot turn text into tokens")
    return model.to(device), tokenizer


def open_folder(spec: str, device) -> tuple[GPT, Tokenizer | None]:
    path, which = Path(spec), ""
    if not path.exists() and "@" in path.name:  # RUN@best, RUN@last, RUN@N
        run_dir, _, which = spec.rpartition("@")
        return load_model_folder(run_checkpoint(Path(run_dir), which), device)
    if not path.exists():
        raise GptlabError(f"checkpoint {path} does not exist")
    if is_unmerged_adapter(path):
        base, tokenizer = open_model(adapter_base(path), device)
        load_adapter(path / ADAPTER_DIR, base)
        return base, tokenizer
    if is_hf_folder(path):
        return load_hf_model(str(path))
    # A run that is training prunes old checkpoints: if the one chosen vanishes before it is
    # read, the run's choice is made again (a few times) instead of failing.
    attempts_left = RETRIES_WHILE_PRUNED
    while True:
        chosen = resolve_model_dir(path)
        try:
            return load_model_folder(chosen, device)
        except GptlabError:
            attempts_left -= 1
            if chosen.exists() or attempts_left == 0:
                raise


def run_checkpoint(run_dir: Path, which: str) -> Path:
    """The checkpoint `which` (best, last or a step number) of training run `run_dir`."""
    if not is_run_folder(run_dir):
        raise GptlabError(f"{run_dir} is not a training run folder, so @{which} names nothing")
    if which == "best":
        found = best_checkpoint(run_dir)
    elif which == "last":
        found = latest_checkpoint(run_dir)
    elif which.isdigit():
        found = run_dir / CHECKPOINTS_DIR / checkpoint_name(int(which))
        found = found if found.is_dir() else None
    else:
        raise GptlabError(f"{run_dir}@{which}: after @ give best, last or a step number")
    if found is None:
        raise GptlabError(
            f"{run_dir} has no checkpoint {which}; see {run_dir / CHECKPOINTS_DIR} for those it has"
        )
    return found


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder itself, or the checkpoint a training run folder points to.

    For a run folder the best checkpoint is preferred, then the latest.
    """
    path = Path(path)
    if not path.exists():
        raise GptlabError(f"checkpoint {path} does not exist")
    if is_model_dir(path):
        return path
    found = find_run_checkpoint(path)
    if found is None:
        raise GptlabError(
            f"{path} holds no model: expected {WEIGHTS_FILE}, {CONFIG_FILE} and {TOKENIZER_FILE}, "
            "or a training run folder with checkpoints"
        )
    return found


def is_hf_folder(path: Path) -> bool:
    """A Hugging Face GPT-2 folder: its config.json is Hugging Face's (model_type), not gptlab's."""
    config = path / CONFIG_FILE
    if not config.is_file():
        return False
    values = read_json(config, "model config")
    return isinstance(values, dict) and "model_type" in values and "block_size" not in values


def random_preset_model(name: str, device) -> tuple[GPT, Tokenizer]:
    """A preset's shape with random weights (seed 0, the same model every time) and GPT-2's BPE."""
    config = model_preset(name)
    if config.vocab_size != GPT2_VOCAB_SIZE:
        raise GptlabError(
            f"preset {name!r} is a character-level shape whose vocabulary comes from its "
            "training data; train it first (gptlab train) and open its run folder"
        )
    require_model_fits(config, torch.device(device))
    torch.manual_seed(0)  # the same random preset model every time; --seed is for sampling
    return GPT(config).to(device), GPT2Tokenizer()
