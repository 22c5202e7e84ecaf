"""The settings of a fine-tuning run: one dataclass per task, loaded like run configs.

    defaults (per task) -> a TOML file (flat: `epochs = 3`) -> the given values -> key=value

`gptlab finetune classify|instruct` passes its --flags as the given values and takes
`--config FILE.toml` and `key=value` overrides on top, with the same typed parsing and
nearest-key errors as `gptlab train` (gptlab.overrides). Errors name the setting as it is written
in a TOML file or an override (`epochs`, `lora_rank`), never a command-line flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.finetune.examples import BalanceMode
from gptlab.model.lora import DEFAULT_TARGETS, LoRAConfig
from gptlab.overrides import apply_table, check_fields, override, read_toml, set_field, setting

Log = Callable[[str], None]  # where a fine-tuning run reports progress (print, or a list's append)


@dataclass
class FinetuneOptions:
    data: str = ""  # the data file (required)
    init: str = ""  # a gptlab model/run folder, or hf:NAME (required)
    out: str = ""  # the output folder (required)
    epochs: int = setting(3, ge=1)
    lr: float = setting(5e-5, gt=0)
    weight_decay: float = setting(0.1, ge=0)
    warmup_steps: int = setting(0, ge=0)
    grad_clip: float = setting(1.0, ge=0)  # max global grad norm; 0 turns clipping off
    batch_size: int = setting(8, ge=1)
    # tokens per example; none: the model's block_size
    max_length: int | None = setting(None, ge=2)
    train: str = "all"  # head | last-K | all (see gptlab.finetune.trainable)
    lora_rank: int | None = None  # set: train LoRA adapters instead of the base weights
    lora_alpha: float | None = None  # none: 2 x lora_rank
    lora_dropout: float = 0.0
    lora_targets: str = ",".join(DEFAULT_TARGETS)  # comma-separated module names
    merge: bool = False  # with LoRA: also save the merged model folder
    val_fraction: float = setting(0.1, ge=0, lt=1)
    test_fraction: float = setting(0.2, ge=0, lt=1)
    seed: int = 123
    max_seconds: float | None = setting(None, gt=0)  # a training-time budget
    device: str = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        check_fields(self)

    def validate(self, check_paths: bool = True) -> FinetuneOptions:
        """Every setting, checked: each against its declaration, then the rules between them;
        check_paths=False leaves out whether `init` exists (a template printed before the files
        are chosen)."""
        check_fields(self)  # a setting assigned after construction has not been checked yet
        for name in ("data", "init", "out"):
            if not getattr(self, name):
                raise GptlabError(f"{name} is required: set it (e.g. {name}=...)")
        if self.val_fraction + self.test_fraction >= 1:
            raise GptlabError("val_fraction + test_fraction must leave examples to train on")
        if check_paths and not self.init.startswith("hf:") and not Path(self.init).exists():
            raise GptlabError(
                f"init {self.init} does not exist: give a gptlab model or training-run folder, or hf:NAME"
            )
        if self.merge and self.lora_rank is None:
            raise GptlabError("merge folds a LoRA adapter into the model; it needs lora_rank")
        self.lora()  # LoRA settings are checked even before they are used
        return self

    def lora(self) -> LoRAConfig | None:
        """The LoRA adapters to train, or None to update the base weights."""
        if self.lora_rank is None:
            return None
        return LoRAConfig(
            rank=self.lora_rank,
            alpha=self.lora_alpha if self.lora_alpha is not None else 2.0 * self.lora_rank,
            dropout=self.lora_dropout,
            targets=tuple(t.strip() for t in self.lora_targets.split(",") if t.strip()),
        )

    def max_length_for(self, block_size: int) -> int:
        """Tokens per example: max_length, or the model's whole context."""
        if self.max_length is None:
            return block_size
        if self.max_length > block_size:
            raise GptlabError(
                f"max_length {self.max_length} is longer than the model's context ({block_size} "
                f"tokens); use at most {block_size}"
            )
        return self.max_length


@dataclass
class ClassifyOptions(FinetuneOptions):
    epochs: int = setting(5, ge=1)  # a field redefined here keeps its bounds only if restated
    train: str = "last-1"  # the book's recipe: the last block and the final LayerNorm
    balance: BalanceMode = "none"  # none | downsample (to the smallest class) | weight (the loss)


@dataclass
class InstructOptions(FinetuneOptions):
    epochs: int = setting(2, ge=1)
    val_fraction: float = setting(0.05, ge=0, lt=1)  # the book's 85 / 5 / 10 split
    test_fraction: float = setting(0.1, ge=0, lt=1)
    keep_prompt_loss: bool = False
    max_new_tokens: int = setting(256, ge=1)
    answers: int | None = setting(None, ge=0)  # answer the first N test examples; none: all

    def validate(self, check_paths: bool = True) -> InstructOptions:
        if self.train == "head":
            raise GptlabError(
                "train=head has no meaning for instruction tuning (the output layer is the "
                "token embedding); use last-K, all or lora_rank"
            )
        return super().validate(check_paths)


def load_options(
    cls: type[FinetuneOptions],
    config_file: str | Path | None = None,
    given: dict | None = None,
    overrides: list[str] | None = None,
    *,
    validate: bool = True,
) -> FinetuneOptions:
    """cls's defaults -> config_file -> given -> overrides, validated (unless validate=False)."""
    options = cls()
    if config_file is not None:
        apply_table(options, read_toml(config_file), str(config_file))
    for name, value in (given or {}).items():
        if name not in {f.name for f in dataclasses.fields(cls)}:
            raise TypeError(f"{cls.__name__} has no setting {name!r}")  # a bug in the caller
        set_field(options, name, value, name)
    override(options, overrides or [])
    return options.validate() if validate else options
