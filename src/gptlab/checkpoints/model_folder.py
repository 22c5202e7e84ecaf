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

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write, atomic_write_text
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.tokenizers.base import Tokenizer, load_tokenizer, save_tokenizer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"


def tied_keys(model: GPT) -> tuple[str, ...]:
    """State-dict names that alias another tensor (safetensors refuses shared storage).

    With weight tying lm_head.weight is wte.weight and is stored once; an untied head is its own.
    """
    return ("lm_head.weight",) if model.lm_head.weight is model.wte.weight else ()


def model_state_for_saving(model: GPT) -> dict[str, torch.Tensor]:
    """The state dict with tied duplicates dropped and tensors made contiguous on CPU."""
    return {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in model.state_dict().items()
        if name not in tied_keys(model)
    }


def save_model(directory: str | Path, model: GPT, tokenizer: Tokenizer | None = None) -> None:
    from safetensors.torch import save_file

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
    try:
        return ModelConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise GptlabError(
            f"{directory} has no {CONFIG_FILE}: it is not a gptlab model folder"
        ) from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise GptlabError(f"{path} is not a valid model config ({exc})") from None


def load_model(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[GPT, Tokenizer | None]:
    """Load a model folder written by save_model (or a training run; see resolve_model_dir)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = resolve_model_dir(directory)
    config = read_model_config(directory)
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


def load_state_checked(model: GPT, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, failing with one clear line on missing, extra or misshapen tensors."""
    tied = tied_keys(model)
    expected = {k: v for k, v in model.state_dict().items() if k not in tied}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - set(tied))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(
                f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}"
            )
        raise GptlabError(f"weights in {source} do not match the model config: {'; '.join(parts)}")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise GptlabError(
                f"weights in {source} do not match the model config: {name} has shape "
                f"{tuple(state[name].shape)}, the config needs {tuple(tensor.shape)}"
            )
    model.load_state_dict(state, strict=False)  # strict=False only because the tied head is absent


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder itself, or the checkpoint a training run folder points to.

    For a run folder the best checkpoint is preferred, then the latest.
    """
    path = Path(path)
    if not path.exists():
        raise GptlabError(f"checkpoint {path} does not exist")
    if is_model_dir(path):
        return path
    from gptlab.checkpoints.run import find_run_checkpoint

    found = find_run_checkpoint(path)
    if found is None:
        raise GptlabError(
            f"{path} holds no model: expected {WEIGHTS_FILE}, {CONFIG_FILE} and {TOKENIZER_FILE}, "
            "or a training run folder with checkpoints"
        )
    return found
