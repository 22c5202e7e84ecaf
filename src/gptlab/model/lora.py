"""LoRA: low-rank adapters on chosen linear layers, with the base weights frozen.

A wrapped layer computes

    y = W x + b + (alpha / rank) * B (A dropout(x))        A: (rank, in), B: (out, rank)

A starts random (Kaiming-uniform, as in the LoRA paper's reference code) and B at zero, so a
freshly wrapped model computes exactly what the base model computes; training moves only A and B.
Merging folds the update into the weight, W' = W + (alpha / rank) B A, giving back a plain model.

An adapter is saved on its own: adapter.safetensors (the A and B tensors under the names of the
layers they wrap) and adapter_config.json (rank, alpha, dropout, targets).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write, atomic_write_text, loads_json

ADAPTER_WEIGHTS_FILE = "adapter.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = (
        DEFAULT_TARGETS  # module names or dotted suffixes: c_attn, mlp.c_proj
    )

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise GptlabError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if not self.alpha > 0:
            raise GptlabError(f"LoRA alpha must be > 0, got {self.alpha!r}")
        if not 0 <= self.dropout < 1:
            raise GptlabError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if not self.targets or not all(self.targets):
            raise GptlabError("LoRA needs at least one target module name, e.g. c_attn,c_proj,c_fc")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: dict) -> LoRAConfig:
        try:
            return cls(
                rank=d["rank"], alpha=d["alpha"], dropout=d["dropout"], targets=tuple(d["targets"])
            )
        except (KeyError, TypeError) as exc:
            raise GptlabError(
                f"adapter config is damaged ({exc!r}); train the adapter again"
            ) from None


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (see the module docstring)."""

    def __init__(self, base: nn.Linear, config: LoRAConfig) -> None:
        super().__init__()
        self.base = base
        self.scaling = config.scaling
        self.lora_A = nn.Parameter(
            torch.empty(config.rank, base.in_features, device=base.weight.device)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, config.rank, device=base.weight.device)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(config.dropout)
        self.train(base.training)  # a model wrapped in eval mode stays in eval mode (no dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (self.dropout(x) @ self.lora_A.t()) @ self.lora_B.t()  # (..., rank) -> (..., out)
        return self.base(x) + self.scaling * update

    def merged(self) -> nn.Linear:
        """A plain nn.Linear with the update folded into its weight."""
        merged = nn.Linear(
            self.base.in_features,
            self.base.out_features,
            bias=self.base.bias is not None,
            device=self.base.weight.device,
            dtype=self.base.weight.dtype,
        )
        with torch.no_grad():
            merged.weight.copy_(self.base.weight + self.scaling * (self.lora_B @ self.lora_A))
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged


def _matches(module_name: str, target: str) -> bool:
    return module_name == target or module_name.endswith("." + target)


def add_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Freeze every parameter of `model`, then wrap the targeted nn.Linear layers in place.

    Returns the wrapped module names. The tied lm_head is never a target: its weight is the token
    embedding, so an update to it would be an update to the embedding too.
    """
    linears = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name != "lm_head"
    }
    for target in config.targets:
        if not any(_matches(name, target) for name in linears):
            known = sorted({name.rsplit(".", 1)[-1] for name in linears})
            raise GptlabError(
                f"LoRA target {target!r} names no linear layer; choose from {', '.join(known)}"
            )
    for param in model.parameters():
        param.requires_grad_(False)
    wrapped = [name for name in linears if any(_matches(name, t) for t in config.targets)]
    for name in wrapped:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attr, LoRALinear(getattr(parent, attr), config))
    return wrapped


def merge_lora(model: nn.Module) -> None:
    """Replace every LoRALinear in `model` by its merged nn.Linear (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name), attr, module.merged())


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors: {'blocks.0.attn.c_attn.lora_A': ..., ...}."""
    return {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in model.state_dict().items()
        if name.endswith((".lora_A", ".lora_B"))
    }


def save_adapter(directory: str | Path, model: nn.Module, config: LoRAConfig) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = adapter_state(model)
    atomic_write(
        directory / ADAPTER_WEIGHTS_FILE,
        lambda tmp: save_file(state, tmp, metadata={"format": "pt"}),
    )
    atomic_write_text(directory / ADAPTER_CONFIG_FILE, json.dumps(config.to_dict(), indent=2))


def load_adapter(directory: str | Path, model: nn.Module) -> LoRAConfig:
    """Wrap `model` as the saved adapter says and load its A and B tensors."""
    directory = Path(directory)
    try:
        config = LoRAConfig.from_dict(
            loads_json((directory / ADAPTER_CONFIG_FILE).read_text(encoding="utf-8"))
        )
        state = load_file(str(directory / ADAPTER_WEIGHTS_FILE), device="cpu")
    except FileNotFoundError as exc:
        raise GptlabError(
            f"{directory} is not a LoRA adapter folder: {Path(exc.filename).name} is missing"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as exc:
        raise GptlabError(f"the adapter in {directory} could not be read ({exc})") from None
    add_lora(model, config)
    expected = adapter_state(model)
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise GptlabError(
            f"the adapter in {directory} does not fit this base model (different names or shapes)"
        )
    model.load_state_dict(state, strict=False)
    return config
