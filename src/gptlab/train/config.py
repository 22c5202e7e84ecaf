"""The configuration of a training run: model, data and training settings, presets, TOML, overrides.

A run is described by three typed sections, each a dataclass:

    [model]  ModelConfig (gptlab.model.config): the network's shape
    [data]   DataConfig: which corpus, which tokenizer, how batches are drawn
    [train]  TrainConfig: optimizer, schedule, budget, precision, evals, checkpoints, logging

A run configuration is built in layers, each overriding the one before:

    dataclass defaults -> a named preset (src/gptlab/presets/NAME.toml) -> a TOML file -> key=value

Dotted overrides (`train.lr=1e-3 model.n_layer=6`) are parsed by the declared type of the field
(int, float, bool, str, a Literal of choices, or Optional of one of them, where `none` means
unset, in TOML too); nothing is ever eval'd. Each field's choices and bounds are declared beside
it and checked by gptlab.overrides however the value arrives; an unknown key fails with the
nearest valid key. `validate()` holds the rules between fields, and `normalize()` the one step
that rewrites values (dtype and threads aliases to one spelling).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gptlab.data.own_bpe import is_own_bpe, own_bpe_vocab_size
from gptlab.data.sources import check_source_spec
from gptlab.device import dtype_name, threads_setting
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text
from gptlab.model.config import ModelConfig
from gptlab.overrides import apply_table, check_fields, dump_toml, override, read_toml, setting
from gptlab.presets import load_preset

DEFAULT_PRESET = "shakespeare-char"
SECTIONS = ("model", "data", "train")


@dataclass
class DataConfig:
    # A source name (tinyshakespeare, openwebtext, fineweb-edu, hf:NAME) or a local file or folder;
    # see `gptlab prepare --help`. Ignored when prepared_dir names an already prepared folder.
    source: str = "tinyshakespeare"
    tokenizer: str = "char"  # char | gpt2 | bpe:N (trained on the source) | a tokenizer JSON
    prepared_dir: str | None = None  # where the prepared shards are (default: in the gptlab cache)
    val_fraction: float = setting(0.1, gt=0, lt=1)
    max_docs: int | None = None  # cap the corpus (useful for quick runs on big sources)
    max_tokens: int | None = None
    text_column: str = "text"
    # random: windows drawn anywhere, with replacement (the usual). sequential: epochs over the
    # non-overlapping windows, each epoch in a fresh order (seeded). shifted: as sequential, and
    # each epoch also moves the windows' grid by a random offset, so the cut points change.
    loader_mode: Literal["random", "sequential", "shifted"] = "random"
    # Re-hash the shards against meta.json before training. "auto": only before a long run (see
    # train/training_data.py), where a pass over the data is cheap beside what a bad shard costs.
    verify_shards: Literal["auto", "always", "never"] = "auto"

    def __post_init__(self) -> None:
        check_fields(self, "data.")

    def validate(self) -> None:
        check_source_spec(self.source)  # a rule of its own: the spec's grammar (data/sources.py)
        if is_own_bpe(self.tokenizer):
            own_bpe_vocab_size(self.tokenizer)  # bpe:N with N a valid vocabulary size


@dataclass
class TrainConfig:
    # Batch: tokens per optimizer step (all ranks together) = micro_batch_size x block_size x
    # world size x accumulation steps; the accumulation steps are derived from it.
    tokens_per_step: int = setting(8192, ge=1)
    micro_batch_size: int = setting(64, ge=1)  # sequences per forward pass on one device

    # A batch-size ramp: the first batch_ramp_steps steps grow linearly from batch_ramp_start
    # tokens to tokens_per_step (whole sequences; train/batch_ramp.py). 0: every step is full.
    batch_ramp_steps: int = setting(0, ge=0)
    batch_ramp_start: int | None = setting(
        None, ge=1, says=">= 1 (tokens in the first step), or none"
    )

    # AdamW and the schedule: linear warmup to lr, then cosine decay to min_lr at the budget's end;
    # or, with cooldown_fraction, warmup-stable-decay: lr held until the last cooldown_fraction of
    # the budget, then a straight line down to min_lr (train/optim.py).
    lr: float = setting(1e-3, gt=0)
    min_lr: float = setting(1e-4, ge=0)  # at most lr
    warmup_steps: int = setting(20, ge=0)
    cooldown_fraction: float | None = setting(
        None, gt=0, le=1, says="in (0, 1] (the share of the budget spent decaying), or none"
    )
    weight_decay: float = setting(0.1, ge=0)  # applied to 2-D weights (matmuls, embeddings) only
    # AdamW's rate for three kinds of parameter, as multiples of lr (the GPU speedruns give each
    # kind its own rate; train/optim.py): the lookup tables (token and position embeddings, the
    # bigram/trigram and value tables; a tied head goes with the token embedding), an untied
    # output head, and the additions' scalar dials (x0_blend's and bigram's scales, smear's
    # strength). Norms, biases and gates keep lr.
    embed_lr_scale: float = setting(1.0, gt=0)
    head_lr_scale: float = setting(1.0, gt=0)
    scalar_lr_scale: float = setting(1.0, gt=0)
    beta1: float = setting(0.9, ge=0, lt=1)
    beta2: float = setting(0.99, ge=0, lt=1)
    # max global grad norm; 0 turns clipping off (the norm is still logged)
    grad_clip: float = setting(1.0, ge=0)
    # adamw: AdamW for everything. muon: Muon (train/muon.py) for the blocks' weight matrices at
    # peak muon_lr, AdamW for the rest at lr; the schedule scales both by the same factor.
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_lr: float = setting(0.02, gt=0)
    muon_momentum: float = setting(0.95, ge=0, lt=1)
    # The orthogonalisation (train/muon.py): iterations, and which polynomial each one applies.
    # quintic: the same (3.4445, -4.7750, 2.0315) every time; polar_express: Amsel et al. 2025's
    # per-iteration coefficients, which reach singular values near 1 in fewer iterations.
    muon_ns_steps: int = setting(5, ge=1, le=20)
    muon_coefficients: Literal["quintic", "polar_express"] = "quintic"
    # The iterations' dtype. auto: bf16 on a GPU, float32 on a CPU; bf16 on a CPU with bf16 units
    # runs them ~2.8x faster (the prose-cpu preset's 16 matrices: 4.2 ms against 11.7 a step, on a
    # 2-core Zen 5), and falls back to float32, as train.dtype does, where they would be emulated.
    muon_ns_dtype: Literal["auto", "fp32", "bf16"] = "auto"
    # NorMuon (Li et al. 2025): each neuron's share of the orthogonalised update is divided by a
    # running RMS of its own, then the update is rescaled to its Frobenius norm before.
    muon_neuron_norm: bool = False

    # Weight averaging: the final evaluation, the final checkpoint and the final sample use an
    # average of the last weights (train/weight_average.py). ema: an exponential moving average
    # with weight_average_decay per step; tail: the plain mean of the weights after every step of
    # the budget's last weight_average_tail (a fraction). The raw weights stay resumable.
    weight_average: Literal["none", "ema", "tail"] = "none"
    weight_average_decay: float = setting(0.99, gt=0, lt=1)
    weight_average_tail: float = setting(0.2, gt=0, le=1)

    # Budget: steps, seconds of training, or both (whichever ends first). The cosine decay follows
    # whichever is further along, so a wall-clock budget still ends at min_lr.
    max_steps: int | None = setting(2000, ge=1)
    max_seconds: float | None = setting(None, gt=0)

    # Evaluation: mean loss over a fixed set of windows of each split. eval_every=0: only at the end.
    eval_every: int = setting(250, ge=0)
    eval_tokens: int = setting(65536, ge=1)  # tokens per split per periodic eval
    # the final eval; none = the whole val split
    final_eval_tokens: int | None = setting(
        None, ge=1, says=">= 1, or none for the whole val split"
    )
    # HellaSwag accuracy during training (logged as hellaswag_acc / hellaswag_acc_norm); 0: off.
    eval_hellaswag_every: int = setting(0, ge=0)
    eval_hellaswag_limit: int = setting(1000, ge=1)  # items per evaluation
    eval_hellaswag_data: str | None = None  # a jsonl file; none: the official set (downloaded)
    # The induction bump: loss on random tokens repeated twice, first copy vs the repeat (logged
    # as induction_first_loss / induction_repeated_loss; interp/induction.py); 0: off.
    eval_induction_every: int = setting(0, ge=0)
    # random tokens per copy; 2 copies must fit in block_size
    eval_induction_length: int = setting(32, ge=1)
    sample_every: int = setting(0, ge=0)  # 0: a sample only at the end
    sample_tokens: int = setting(300, ge=1)
    sample_prompt: str = "\n"
    sample_temperature: float = setting(0.8, ge=0, says=">= 0 (0 is greedy)")
    # 0: checkpoints only at the end (and at each new best val loss)
    checkpoint_every: int = setting(0, ge=0)
    keep_last: int = setting(2, ge=1)  # checkpoints kept besides the best one
    log_every: int = setting(1, ge=1)  # steps between metrics.jsonl lines

    # each process adds its rank to the seed; torch takes seeds < 2**63
    seed: int = setting(1337, ge=0, lt=2**62, says="in [0, 2**62)")
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # auto | fp32 | bf16 | fp16 (float32, bfloat16, float16 are aliases, see normalize). auto:
    # bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU.
    dtype: str = "auto"
    # torch.compile the model. The compilation runs before the clock starts, on dummy batches of
    # the real shapes (train/compile_warmup.py), so train.max_seconds counts training only.
    compile: bool = False
    # CPU threads for torch: "auto" (the cores free of other work, see gptlab.device.auto_threads),
    # a number as text ("1"), or "none" (torch's default: one per core, which collapses on a
    # machine busy with other work). A string so that TOML and key=value spell it alike.
    threads: str = "auto"
    # Under torchrun with several processes: "ddp" keeps a full model per process, "fsdp" shards
    # parameters, gradients and optimizer state (train/distributed.py). One process: no effect.
    distributed: Literal["ddp", "fsdp"] = "ddp"
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "gptlab"

    def __post_init__(self) -> None:
        check_fields(self, "train.")

    def normalize(self) -> None:
        """Spell dtype and threads one way (bfloat16 -> bf16, " 4 " -> 4), checking them."""
        self.dtype = dtype_name(self.dtype, "train.dtype", extra=("auto",))
        self.threads = threads_setting(self.threads, "train.threads")

    def validate(self) -> None:
        """The rules between fields (each field's own type, choices and bounds are declared)."""
        if self.max_steps is None and self.max_seconds is None:
            raise GptlabError("set a budget: train.max_steps=N or train.max_seconds=S (or both)")
        if self.min_lr > self.lr:
            raise GptlabError(
                f"need train.lr > 0 and 0 <= train.min_lr <= train.lr, got {self.lr} and {self.min_lr}"
            )
        if self.distributed == "fsdp" and self.optimizer == "muon":
            raise GptlabError(
                "train.optimizer=muon orthogonalises whole matrices, which FSDP shards across "
                "processes; use train.optimizer=adamw with train.distributed=fsdp"
            )
        if self.weight_average != "none" and self.distributed == "fsdp":
            raise GptlabError(
                "train.weight_average keeps a full copy of the weights, which FSDP shards across "
                "processes; use train.weight_average=none with train.distributed=fsdp"
            )
        if (self.batch_ramp_steps > 0) != (self.batch_ramp_start is not None):
            raise GptlabError(
                "a batch ramp needs both train.batch_ramp_steps=N and train.batch_ramp_start=TOKENS "
                f"(got {self.batch_ramp_steps} and {self.batch_ramp_start}); set both, or neither"
            )
        if self.batch_ramp_start is not None and self.batch_ramp_start >= self.tokens_per_step:
            raise GptlabError(
                f"train.batch_ramp_start ({self.batch_ramp_start}) must be below "
                f"train.tokens_per_step ({self.tokens_per_step}): the ramp grows towards it"
            )
        if not self.sample_prompt:
            raise GptlabError(
                'train.sample_prompt is empty; give the samples a prompt (default "\\n")'
            )


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def normalize(self) -> RunConfig:
        """Rewrite the settings that have several spellings into one (see TrainConfig.normalize)."""
        self.train.normalize()
        return self

    def validate(self) -> RunConfig:
        """Every setting checked: each field against its declaration (a field set by plain
        assignment has not been checked yet), then the rules between fields."""
        for section in SECTIONS:
            check_fields(getattr(self, section), f"{section}.")
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
        self.batch_ramp_sequences(processes=1)
        return self

    def batch_ramp_sequences(self, processes: int) -> int | None:
        """Sequences per process in the ramp's first step (None: no ramp), checked to be whole."""
        start = self.train.batch_ramp_start
        if start is None:
            return None
        per_sequence = self.model.block_size * processes
        if start % per_sequence:
            suggestion = max(1, round(start / per_sequence)) * per_sequence
            raise GptlabError(
                f"train.batch_ramp_start ({start}) must be a multiple of block_size x processes "
                f"({per_sequence}): every step is whole sequences; e.g. train.batch_ramp_start={suggestion}"
            )
        return start // per_sequence

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
        override(self, assignments)
        return self


# -- building configs ----------------------------------------------------------------------------


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
    named = file_table.pop("preset", None)
    base = preset or named or (None if config_file is not None else DEFAULT_PRESET)
    # Each field is checked as it is set; the rules between fields run once every layer is
    # applied, since fields only need to make sense together at the end (n_embd with n_head...).
    config = RunConfig()
    if base is not None:
        table = load_preset(base)
        table.pop("preset", None)
        apply_table(config, table, f"preset {base}")
    apply_table(config, file_table, str(config_file))
    config.override(overrides or [])
    config.normalize()
    return config.validate() if validate else config
