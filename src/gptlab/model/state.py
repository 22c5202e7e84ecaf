"""The model's weights as a state dict: what is saved, and loading it back with clear errors.

With weight tying, lm_head.weight is wte.weight; safetensors refuses shared storage, so the tied
head is stored once (as wte) and restored by the tie itself.
"""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT


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
