"""load_model: one call for every folder gptlab writes a model into.

A path may be a model folder (model.safetensors + config.json [+ tokenizer.json]) or a training
run folder, which stands for its best checkpoint (lowest val loss), else its latest.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from gptlab.checkpoints.model_folder import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    is_model_dir,
    read_model_config,
)
from gptlab.checkpoints.run import find_run_checkpoint
from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.model.params import require_model_fits
from gptlab.model.state import load_state_checked, tied_keys
from gptlab.tokenizers.base import Tokenizer, load_tokenizer

RETRIES_WHILE_PRUNED = 3


def load_model(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[GPT, Tokenizer | None]:
    """Load a model folder written by save_model (or a training run; see resolve_model_dir).

    A run that is training prunes old checkpoints: if the one chosen vanishes before it is
    read, the run's choice is made again (a few times) instead of failing.
    """
    attempts_left = RETRIES_WHILE_PRUNED
    while True:
        chosen = resolve_model_dir(directory)
        try:
            return load_model_folder(chosen, device)
        except GptlabError:
            attempts_left -= 1
            if chosen.exists() or attempts_left == 0:
                raise


def load_model_folder(
    directory: Path, device: str | torch.device = "cpu"
) -> tuple[GPT, Tokenizer | None]:
    """The model in one model folder (not a run folder).

    Before anything is allocated, the config's sizes are checked against the machine's memory
    and the weights file's header against the config, so a damaged or hostile config.json is
    one line, not minutes of allocation.
    """
    config = read_model_config(directory)
    require_model_fits(config, torch.device("cpu"))  # weights are read on the CPU first
    check_weights_header(directory / WEIGHTS_FILE, config)
    try:
        state = load_file(str(directory / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise GptlabError(
            f"{directory / WEIGHTS_FILE} could not be read as safetensors ({exc})"
        ) from None
    model = GPT(config)
    load_state_checked(model, state, source=str(directory))
    tokenizer = (
        load_tokenizer(directory / TOKENIZER_FILE)
        if (directory / TOKENIZER_FILE).exists()
        else None
    )
    if tokenizer is not None and tokenizer.vocab_size != config.vocab_size:
        raise GptlabError(
            f"{directory}: tokenizer has {tokenizer.vocab_size} tokens but the model expects "
            f"{config.vocab_size}; the folder mixes files from different models"
        )
    return model.to(device), tokenizer


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder itself, or the checkpoint a training run folder points to.

    For a run folder the best checkpoint is preferred, then the latest.
    """
    path = Path(path)
    if not path.exists():
        raise GptlabError(f"checkpoint {path} does not exist")
    if is_model_dir(path):
        return path
    if (path / "adapter").is_dir() and (path / "task.json").is_file():
        raise GptlabError(
            f"{path} holds a LoRA adapter, not a whole model: fold it into its base with "
            f"`gptlab finetune merge --checkpoint {path}` (or load it with "
            "gptlab.checkpoints.finetuned.load_finetuned)"
        )
    found = find_run_checkpoint(path)
    if found is None:
        raise GptlabError(
            f"{path} holds no model: expected {WEIGHTS_FILE}, {CONFIG_FILE} and {TOKENIZER_FILE}, "
            "or a training run folder with checkpoints"
        )
    return found


def check_weights_header(path: Path, config) -> None:
    """The tensor names and shapes in a safetensors header against what `config` builds (on the
    meta device: no memory), before the weights are read."""
    try:
        with safe_open(str(path), framework="pt") as weights:
            found = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except (SafetensorError, OSError) as exc:
        raise GptlabError(f"{path} could not be read as safetensors ({exc})") from None
    with torch.device("meta"):
        model = GPT(config)
    tied = tied_keys(model)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items() if name not in tied}
    for name, shape in expected.items():
        if name in found and found[name] != shape:
            raise GptlabError(
                f"weights in {path.parent} do not match the model config: {name} has shape "
                f"{found[name]}, the config needs {shape}"
            )
