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
from gptlab.overrides import (
    apply_table,
    check_fields,
    dump_flat_toml,
    override,
    read_toml,
    set_field,
    setting,
)
from gptlab.sae.model import SaeKind


@dataclass
class SaeOptions:
    model: str = ""  # a gptlab training run or model folder (required)
    out: str = ""  # the SAE folder to write (required)
    hook: str = "blocks.1.hook_resid_post"  # any name run_with_cache knows (docs/hooks.md)
    data: str = ""  # a prepared data folder; empty: the run's own training data
    kind: SaeKind = "topk"  # topk (Gao et al. 2024) | relu (ReLU + L1 penalty)
    features: int = setting(2048, ge=1)  # d_sae, the dictionary's width
    k: int = setting(32, ge=1)  # topk: active features per token
    l1_coefficient: float = setting(5.0, ge=0)  # relu: weight of the L1 penalty
    aux_coefficient: float = setting(0.03125, ge=0)  # topk: weight of AuxK (Gao et al.: 1/32)
    aux_k: int = setting(0, ge=0)  # topk: dead features AuxK uses per token; 0: d_in / 2
    # The encoder's start, as a multiple of the decoder's transpose (Gao et al.: 1); none: the
    # largest multiple whose first reconstruction is no worse than the mean (calibrate_encoder).
    encoder_init_scale: float | None = setting(None, gt=0)
    lr: float = setting(1e-3, gt=0)  # Adam's peak learning rate
    warmup_steps: int = setting(100, ge=0)  # linear warm-up from 0
    decay_fraction: float = setting(0.2, ge=0, le=1)  # linear decay to 0 over the last part
    batch_size: int = setting(4096, ge=1)  # activations (tokens) per optimizer step
    tokens: int = setting(10_000_000, ge=1)  # the training budget in activations
    # Stop earlier by the clock (the LR schedule stays by tokens).
    max_seconds: float | None = setting(None, gt=0)
    buffer_size: int = setting(262_144, ge=1)  # activations held in the shuffled buffer
    model_batch_size: int = setting(16, ge=1)  # windows of context per forward pass filling it
    dead_window: int = setting(131_072, ge=0)  # not active in this many tokens: dead
    # Steps between restarts of the dead features (Anthropic's resampling); 0: never.
    resample_every: int = setting(0, ge=0)
    grad_clip: float = setting(1.0, ge=0)  # max gradient norm; 0 turns clipping off
    checkpoint_every: int = setting(250, ge=0)  # steps between checkpoints; 0: only at the end
    seed: int = setting(0, ge=0, lt=2**63, says="in [0, 2**63)")
    device: str = "auto"

    def __post_init__(self) -> None:
        check_fields(self)

    def validate(self, check_paths: bool = True) -> SaeOptions:
        """Every setting against its declaration, then the rules between them."""
        check_fields(self)  # a setting assigned after construction has not been checked yet
        for name in ("model", "out"):
            if not getattr(self, name):
                raise GptlabError(f"{name} is required: set it (e.g. {name}=runs/...)")
        if self.kind == "topk" and self.k > self.features:
            raise GptlabError(f"k ({self.k}) must be at most features ({self.features})")
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
        apply_table(options, read_toml(config_file), str(config_file))
    names = {f.name for f in dataclasses.fields(SaeOptions)}
    for name, value in (given or {}).items():
        if name not in names:
            raise TypeError(f"SaeOptions has no setting {name!r}")  # a bug in the caller
        set_field(options, name, value, name)
    override(options, overrides or [])
    return options.validate() if validate else options
