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

from safetensors.torch import save_file

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write, atomic_write_text, read_json
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.state import model_state_for_saving
from gptlab.tokenizers.base import Tokenizer, save_tokenizer

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
