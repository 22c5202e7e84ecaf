"""The configuration of a training run: model, data and training settings, presets, TOML, overrides.

A run is described by three typed sections, each a dataclass:

    [model]  ModelConfig (gptlab.model.config): the network's shape
    [data]   DataConfig: which corpus, which tokenizer, how batches are drawn
    [train]  TrainConfig: optimizer, schedule, budget, precision, evals, checkpoints, logging

A run configuration is built in layers, each overriding the one before:

    dataclass defaults -> a named preset (src/gptlab/presets/NAME.toml) -> a TOML file -> key=value

Dotted overrides (`train.lr=1e-3 model.n_layer=6`) are parsed by the declared type of the field
(int, float, bool, str, or Optional of one of them, where `none` means unset, in TOML too);
nothing is ever eval'd. An unknown key fails with the nearest valid key, a wrong type with the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.data.own_bpe import is_own_bpe, own_bpe_vocab_size
from gptlab.data.sources import check_source_spec
from gptlab.device import dtype_name, threads_setting
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text
from gptlab.model.config import ModelConfig
from gptlab.overrides import (
    dump_toml,
    field_names,
    field_type,
    nearest_key,
    parse_value,
    read_toml,
    set_field,
    split_assignment,
)
from gptlab.presets import load_preset

DEFAULT_PRESET = "shakespeare-char"
SECTIONS = ("model", "data", "train")
LOADER_MODES = ("random", "sequential")
VERIFY_MODES = ("auto", "always", "never")
OPTIMIZERS = ("adamw", "muon")
DISTRIBUTED = ("ddp", "fsdp")  # train.distributed: gptlab/train/distributed.py has both


@dataclass
class DataConfig:
    # A source name (tinyshakespeare, openwebtext, fineweb-edu, hf:NAME) or a local file or folder;
    # see `gptlab prepare --help`. Ignored when prepared_dir names an already prepared folder.
    source: str = "tinyshakespeare"
    tokenizer: str = "char"  # char | gpt2 | bpe:N (trained on the source) | a tokenizer JSON
    prepared_dir: str | None = None  # where the prepared shards are (default: in the gptlab cache)
    val_fraction: float = 0.1
    max_docs: int | None = None  # cap the corpus (useful for quick runs on big sources)
    max_tokens: int | None = None
    text_column: str = "text"
    loader_mode: str = "random"  # random windows (the usual) or sequential passes over the split
    # Re-hash the shards against meta.json before training. "auto": only before a long run (see
    # train/training_data.py), where a pass over the data is cheap beside what a bad shard costs.
    verify_shards: str = "auto"

    def validate(self) -> None:
        check_source_spec(self.source)
        if is_own_bpe(self.tokenizer):
            own_bpe_vocab_size(self.tokenizer)
        if not 0.0 < self.val_fraction < 1.0:
            raise GptlabError(f"data.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.loader_mode not in LOADER_MODES:
            raise GptlabError(
                f"data.loader_mode must be one of {', '.join(LOADER_MODES)}, got {self.loader_mode!r}"
            )
        if self.verify_shards not in VERIFY_MODES:
            raise GptlabError(
                f"data.verify_shards must be one of {', '.join(VERIFY_MODES)}, got {self.verify_shards!r}"
            )


@dataclass
class TrainConfig:
    # Batch: tokens per optimizer step (all ranks together) = micro_batch_size x block_size x
    # world size x accumulation steps; the accumulation steps are derived from it.
    tokens_per_step: int = 8192
    micro_batch_size: int = 64  # sequences per forward pass on one device

    # AdamW and the schedule: linear warmup to lr, then cosine decay to min_lr at the budget's end.
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1  # applied to 2-D weights (matmuls, embeddings) only
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global grad norm; 0 turns clipping off (the norm is still logged)
    # adamw: AdamW for everything. muon: Muon (train/muon.py) for the blocks' weight matrices at
    # peak muon_lr, AdamW for the rest at lr; the schedule scales both by the same factor.
    optimizer: str = "adamw"
    muon_lr: float = 0.02
    muon_momentum: float = 0.95

    # Budget: steps, seconds of training, or both (whichever ends first). The cosine decay follows
    # whichever is further along, so a wall-clock budget still ends at min_lr.
    max_steps: int | None = 2000
    max_seconds: float | None = None

    # Evaluation: mean loss over a fixed set of windows of each split. eval_every=0: only at the end.
    eval_every: int = 250
    eval_tokens: int = 65536  # tokens per split per periodic eval
    final_eval_tokens: int | None = None  # the final eval; none = the whole val split
    # HellaSwag accuracy during training (logged as hellaswag_acc / hellaswag_acc_norm); 0: off.
    eval_hellaswag_every: int = 0
    eval_hellaswag_limit: int = 1000  # items per evaluation
    eval_hellaswag_data: str | None = None  # a jsonl file; none: the official set (downloaded)
    # The induction bump: loss on random tokens repeated twice, first copy vs the repeat (logged
    # as induction_first_loss / induction_repeated_loss; interp/induction.py); 0: off.
    eval_induction_every: int = 0
    eval_induction_length: int = 32  # random tokens per copy; 2 copies must fit in block_size
    sample_every: int = 0  # 0: a sample only at the end
    sample_tokens: int = 300
    sample_prompt: str = "\n"
    sample_temperature: float = 0.8
    checkpoint_every: int = 0  # 0: checkpoints only at the end (and at each new best val loss)
    keep_last: int = 2  # checkpoints kept besides the best one
    log_every: int = 1  # steps between metrics.jsonl lines

    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # auto | fp32 | bf16 | fp16 (float32, bfloat16, float16 are aliases). auto: bf16 on GPUs
    # that have it, fp16 on older GPUs, fp32 on CPU.
    dtype: str = "auto"
    compile: bool = False  # torch.compile the model
    # CPU threads for torch: "auto" (the cores free of other work, see gptlab.device.auto_threads),
    # a number as text ("1"), or "none" (torch's default: one per core, which collapses on a
    # machine busy with other work). A string so that TOML and key=value spell it alike.
    threads: str = "auto"
    # Under torchrun with several processes: "ddp" keeps a full model per process, "fsdp" shards
    # parameters, gradients and optimizer state (train/distributed.py). One process: no effect.
    distributed: str = "ddp"
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "gptlab"

    def validate(self) -> None:
        positive = (
            "tokens_per_step",
            "micro_batch_size",
            "eval_tokens",
            "sample_tokens",
            "log_every",
            "keep_last",
            "eval_hellaswag_limit",
            "eval_induction_length",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise GptlabError(f"train.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in (
            "warmup_steps",
            "eval_every",
            "eval_hellaswag_every",
            "eval_induction_every",
            "sample_every",
            "checkpoint_every",
        ):
            if getattr(self, name) < 0:
                raise GptlabError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.max_steps is None and self.max_seconds is None:
            raise GptlabError("set a budget: train.max_steps=N or train.max_seconds=S (or both)")
        if self.max_steps is not None and self.max_steps < 1:
            raise GptlabError(f"train.max_steps must be >= 1, got {self.max_steps}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise GptlabError(f"train.max_seconds must be > 0, got {self.max_seconds}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise GptlabError(
                f"need train.lr > 0 and 0 <= train.min_lr <= train.lr, got {self.lr} and {self.min_lr}"
            )
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise GptlabError("train.beta1 and train.beta2 must be in [0, 1)")
        if self.optimizer not in OPTIMIZERS:
            raise GptlabError(
                f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.distributed not in DISTRIBUTED:
            raise GptlabError(
                f"train.distributed must be one of {', '.join(DISTRIBUTED)}, got {self.distributed!r}"
            )
        if self.distributed == "fsdp" and self.optimizer == "muon":
            raise GptlabError(
                "train.optimizer=muon orthogonalises whole matrices, which FSDP shards across "
                "processes; use train.optimizer=adamw with train.distributed=fsdp"
            )
        if not (self.muon_lr > 0 and 0 <= self.muon_momentum < 1):
            raise GptlabError("need train.muon_lr > 0 and 0 <= train.muon_momentum < 1")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise GptlabError("train.weight_decay and train.grad_clip must be >= 0")
        self.dtype = dtype_name(
            self.dtype, "train.dtype", extra=("auto",)
        )  # aliases -> one spelling
        if not 0 <= self.seed < 2**62:  # each process adds its rank; torch takes < 2**63
            raise GptlabError(f"train.seed must be in [0, 2**62), got {self.seed}")
        self.threads = threads_setting(self.threads, "train.threads")
        if not self.sample_prompt:
            raise GptlabError(
                'train.sample_prompt is empty; give the samples a prompt (default "\\n")'
            )
        if not self.sample_temperature >= 0:
            raise GptlabError(
                f"train.sample_temperature must be >= 0 (0 is greedy), got {self.sample_temperature}"
            )
        if self.final_eval_tokens is not None and self.final_eval_tokens < 1:
            raise GptlabError(
                "train.final_eval_tokens must be >= 1, or none for the whole val split"
            )


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        length, longest = self.train.eval_induction_length, self.model.block_size // 2
        if self.train.eval_induction_every and not 2 <= length <= longest:
            raise GptlabError(
                f"train.eval_induction_length must be 2 to {longest} (two copies must fit "
                f"model.block_size={self.model.block_size}), got {length}"
            )
        self.accumulation_steps(processes=1)
        return self

    def accumulation_steps(self, processes: int) -> int:
        """Micro-steps per optimizer step for `processes` data-parallel processes.

        train.tokens_per_step is the batch of the whole job, so it must split evenly into
        micro-batches of micro_batch_size x block_size tokens on every process.
        """
        per_micro_step = self.train.micro_batch_size * self.model.block_size * processes
        if self.train.tokens_per_step % per_micro_step:
            suggestion = max(1, round(self.train.tokens_per_step / per_micro_step)) * per_micro_step
            raise GptlabError(
                f"train.tokens_per_step ({self.train.tokens_per_step}) must be a multiple of "
                f"micro_batch_size x block_size x processes ({per_micro_step}); "
                f"e.g. train.tokens_per_step={suggestion}"
            )
        return self.train.tokens_per_step // per_micro_step

    def to_dict(self) -> dict:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def to_toml(self) -> str:
        return dump_toml(
            self.to_dict(), header="gptlab run configuration (complete: every setting is listed)"
        )

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_toml())

    def override(self, assignments: list[str]) -> RunConfig:
        """Apply `section.key=value` strings in order; returns self."""
        for assignment in assignments:
            key, text = split_assignment(assignment, "section.key=value", "train.lr=1e-3")
            self.set(key, parse_value(key, text, self.field_type(key)))
        return self

    def field_type(self, dotted: str) -> object:
        """The declared type of `section.key` (an unknown key fails, naming the nearest one)."""
        section, name = self._split_key(dotted)
        return field_type(getattr(self, section), name)

    def set(self, dotted: str, value: object) -> None:
        section, name = self._split_key(dotted)
        set_field(getattr(self, section), name, value, dotted)

    def _split_key(self, dotted: str) -> tuple[str, str]:
        section, _, name = dotted.partition(".")
        if section in SECTIONS and name in field_names(getattr(self, section)):
            return section, name
        raise GptlabError(
            f"unknown config key {dotted!r}; did you mean {nearest_key(dotted, all_keys())!r}? "
            "(keys are section.name)"
        )


def all_keys() -> list[str]:
    """Every valid dotted key, e.g. 'train.lr'."""
    classes = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
    return [
        f"{section}.{f.name}" for section, cls in classes.items() for f in dataclasses.fields(cls)
    ]


# -- building configs ----------------------------------------------------------------------------


def apply_table(config: RunConfig, table: dict, source: str) -> None:
    """Set every section.key of a parsed TOML table on config (the `preset` key is handled by the caller)."""
    for section, values in table.items():
        if section == "preset":
            continue
        if section not in SECTIONS or not isinstance(values, dict):
            nearest = difflib.get_close_matches(section, SECTIONS, n=1, cutoff=0.0)[0]
            raise GptlabError(f"{source}: unknown section {section!r}; did you mean [{nearest}]?")
        for name, value in values.items():
            try:
                config.set(f"{section}.{name}", value)
            except GptlabError as exc:
                raise GptlabError(f"{source}: {exc}") from None


def build_run_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    validate: bool = True,
) -> RunConfig:
    """defaults -> preset -> config file -> overrides, validated (unless validate=False).

    With neither a preset nor a config file, the default preset is used. A config file may name
    its own base with a top-level `preset = "NAME"`; without one it starts from the plain defaults
    (a run folder's config.toml is complete, so it reproduces its run exactly).
    """
    file_table = read_toml(config_file) if config_file is not None else {}
    base = (
        preset or file_table.get("preset") or (None if config_file is not None else DEFAULT_PRESET)
    )
    # Fields are set one by one (setattr does not validate); validation runs once every layer is
    # applied, since fields only need to make sense together at the end (n_embd with n_head...).
    config = RunConfig()
    if base is not None:
        apply_table(config, load_preset(base), f"preset {base}")
    apply_table(config, file_table, str(config_file))
    config.override(overrides or [])
    return config.validate() if validate else config
