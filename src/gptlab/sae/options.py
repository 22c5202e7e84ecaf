"""The settings of an SAE training run, loaded like every other gptlab config.

    defaults -> a TOML file (flat: `k = 32`) -> the given values -> key=value overrides

Parsed by each field's declared type (gptlab.overrides), validated completely before any model
is loaded or any activation computed. `gptlab sae train --print-options` prints them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.overrides import apply_fields, dump_flat_toml, override_fields, read_toml, set_field
from gptlab.sae.model import KINDS


@dataclass
class SaeOptions:
    model: str = ""  # a gptlab training run or model folder (required)
    out: str = ""  # the SAE folder to write (required)
    hook: str = "blocks.1.hook_resid_post"  # any name run_with_cache knows (docs/hooks.md)
    data: str = ""  # a prepared data folder; empty: the run's own training data
    kind: str = "topk"  # topk (Gao et al. 2024) | relu (ReLU + L1 penalty)
    features: int = 2048  # d_sae, the dictionary's width
    k: int = 32  # topk: active features per token
    l1_coefficient: float = 5.0  # relu: weight of the L1 penalty
    aux_coefficient: float = 0.03125  # topk: weight of the AuxK loss (Gao et al.: 1/32)
    lr: float = 1e-3  # Adam's peak learning rate
    warmup_steps: int = 100  # linear warm-up from 0
    decay_fraction: float = 0.2  # linear decay to 0 over the last part of the budget
    batch_size: int = 4096  # activations (tokens) per optimizer step
    tokens: int = 10_000_000  # the training budget in activations
    max_seconds: float | None = None  # stop earlier by the clock (the LR schedule stays by tokens)
    buffer_size: int = 262_144  # activations held in the shuffled buffer (bounds memory)
    model_batch_size: int = 16  # windows of the model's context per forward pass that fills it
    dead_window: int = 1_000_000  # a feature not active in this many training tokens is dead
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    checkpoint_every: int = 250  # steps between resumable checkpoints; 0: only at the end
    seed: int = 0
    device: str = "auto"

    def validate(self, check_paths: bool = True) -> SaeOptions:
        for name in ("model", "out"):
            if not getattr(self, name):
                raise GptlabError(f"{name} is required: set it (e.g. {name}=runs/...)")
        if self.kind not in KINDS:
            raise GptlabError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("features", "k", "batch_size", "tokens", "buffer_size", "model_batch_size"):
            if getattr(self, name) < 1:
                raise GptlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kind == "topk" and self.k > self.features:
            raise GptlabError(f"k ({self.k}) must be at most features ({self.features})")
        if not self.lr > 0:
            raise GptlabError(f"lr must be > 0, got {self.lr}")
        for name in ("warmup_steps", "dead_window", "checkpoint_every", "seed"):
            if getattr(self, name) < 0:
                raise GptlabError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("l1_coefficient", "aux_coefficient", "grad_clip"):
            if getattr(self, name) < 0:
                raise GptlabError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.decay_fraction <= 1:
            raise GptlabError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise GptlabError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.buffer_size < 2 * self.batch_size:
            raise GptlabError(
                f"buffer_size ({self.buffer_size}) must hold at least two batches "
                f"(2 x batch_size = {2 * self.batch_size}) to shuffle across model batches"
            )
        if self.tokens < self.batch_size:
            raise GptlabError(
                f"tokens ({self.tokens}) is less than one batch ({self.batch_size}); raise tokens"
            )
        if check_paths:
            if not Path(self.model).exists():
                raise GptlabError(f"model {self.model} does not exist: give a run or model folder")
            if self.data and not (Path(self.data) / "meta.json").is_file():
                raise GptlabError(
                    f"data {self.data} is not a prepared folder (no meta.json); "
                    "make one with gptlab prepare"
                )
        return self

    @property
    def total_steps(self) -> int:
        return self.tokens // self.batch_size

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based): warm-up, constant, linear decay."""
        total = self.total_steps
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        decay_steps = int(total * self.decay_fraction)
        if decay_steps and step >= total - decay_steps:
            return self.lr * (total - step) / decay_steps
        return self.lr

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return dump_flat_toml(self.to_dict(), "gptlab sae train settings")


def load_sae_options(
    config_file: str | Path | None = None,
    given: dict | None = None,
    overrides: list[str] | None = None,
    *,
    validate: bool = True,
) -> SaeOptions:
    """Defaults -> config_file -> given -> overrides, validated (unless validate=False)."""
    options = SaeOptions()
    if config_file is not None:
        apply_fields(options, read_toml(config_file), str(config_file))
    names = {f.name for f in dataclasses.fields(SaeOptions)}
    for name, value in (given or {}).items():
        if name not in names:
            raise TypeError(f"SaeOptions has no setting {name!r}")  # a bug in the caller
        set_field(options, name, value, name)
    override_fields(options, overrides or [])
    return options.validate() if validate else options
