"""A model folder: weights (safetensors), model config and tokenizer (JSON).

    DIR/model.safetensors   the parameters (the tied lm_head is stored once, as wte)
    DIR/config.json         ModelConfig
    DIR/tokenizer.json      the tokenizer the model was trained with

Weights are never unpickled, so a model folder from a stranger cannot run code. Training adds
its own files (optimizer state and so on) next to these; see gptlab.checkpoints.run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write, atomic_write_text, read_json
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.params import require_model_fits
from gptlab.model.state import load_state_checked, model_state_for_saving, tied_keys
from gptlab.tokenizers.base import Tokenizer, load_tokenizer, save_tokenizer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"


def save_model(directory: str | Path, model: GPT, tokenizer: Tokenizer | None = None) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model_state_for_saving(model)
    atomic_write(
        directory / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata={"format": "pt"})
    )
    atomic_write_text(directory / CONFIG_FILE, json.dumps(model.config.to_dict(), indent=2))
    if tokenizer is not None:
        save_tokenizer(tokenizer, directory / TOKENIZER_FILE)


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / WEIGHTS_FILE).is_file()


def read_model_config(directory: str | Path) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise GptlabError(f"{directory} has no {CONFIG_FILE}: it is not a gptlab model folder")
    values = read_json(path, "model config")
    try:
        return ModelConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise GptlabError(f"{path} is not a valid model config ({exc})") from None


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
