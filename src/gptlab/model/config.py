"""Typed configuration: the model's shape, validated, and named presets.

Everything a model needs to be rebuilt is in ModelConfig, which is saved as JSON next to the
weights. Validation happens at construction, so a bad value fails with a clear message before any
tensor is allocated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gptlab.errors import GptlabError
from gptlab.overrides import apply_fields
from gptlab.presets import load_preset

ATTENTION_IMPLS = ("sdpa", "explicit")
# Architecture variants; the first of each is GPT-2's.
POSITION_ENCODINGS = ("learned", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
NORM_PLACEMENTS = ("pre", "post")
MLPS = ("gelu", "swiglu", "relu2")


@dataclass
class ModelConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # the longest context the model sees (learned positions)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    layer_norm_eps: float = 1e-5
    # Round the embedding/head rows up to a multiple of this (64 helps GPU matmuls). The extra rows
    # are sliced off the logits, so they are never sampled and never enter the loss.
    pad_vocab_multiple: int = 1
    # "sdpa": torch's fused scaled_dot_product_attention (flash kernels on GPU);
    # "explicit": softmax(QK^T/sqrt(d))V written out, materialising the attention weights.
    attention: str = "sdpa"
    # Architecture variants (see gptlab.model.*). The defaults are exactly GPT-2.
    pos: str = "learned"  # "learned" embedding, "rope" rotary, or "none" (causal mask only)
    norm: str = "layernorm"  # or "rmsnorm"
    norm_placement: str = "pre"  # "pre": x + f(norm(x)); "post": norm(x + f(x)), as in 2017
    mlp: str = "gelu"  # or "swiglu", "relu2"
    n_kv_head: int | None = None  # key/value heads; fewer than n_head is grouped-query attention
    qk_norm: bool = False  # normalise each head's queries and keys before the dot product
    tie_weights: bool = True  # lm_head shares the token embedding's matrix
    logit_softcap: float | None = None  # logits = cap * tanh(logits / cap) when set

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GptlabError(f"model.{name} must be a positive integer, got {value!r}")

        for name in (
            "vocab_size",
            "block_size",
            "n_layer",
            "n_head",
            "n_embd",
            "pad_vocab_multiple",
        ):
            positive_int(name)
        if self.n_embd % self.n_head != 0:
            raise GptlabError(
                f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head}); "
                f"try n_head={_nearest_divisor(self.n_embd, self.n_head)}"
            )
        for name in ("dropout", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GptlabError(f"model.{name} must be a number, got {value!r}")
        if not isinstance(self.bias, bool):
            raise GptlabError(f"model.bias must be true or false, got {self.bias!r}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise GptlabError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if not float(self.layer_norm_eps) > 0:
            raise GptlabError(f"model.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if self.attention not in ATTENTION_IMPLS:
            raise GptlabError(
                f"model.attention must be one of {', '.join(ATTENTION_IMPLS)}, got {self.attention!r}"
            )
        self.validate_variants()

    def validate_variants(self) -> None:
        for name, valid in (
            ("pos", POSITION_ENCODINGS),
            ("norm", NORMS),
            ("norm_placement", NORM_PLACEMENTS),
            ("mlp", MLPS),
        ):
            value = getattr(self, name)
            if value not in valid:
                raise GptlabError(f"model.{name} must be one of {', '.join(valid)}, got {value!r}")
        for name in ("qk_norm", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise GptlabError(
                    f"model.{name} must be true or false, got {getattr(self, name)!r}"
                )
        if self.n_kv_head is not None:
            value = self.n_kv_head
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GptlabError(
                    f"model.n_kv_head must be a positive integer or null (= n_head), got {value!r}"
                )
            if self.n_head % value != 0:
                divisors = [d for d in range(1, self.n_head + 1) if self.n_head % d == 0]
                raise GptlabError(
                    f"model.n_kv_head ({value}) must divide model.n_head ({self.n_head}); "
                    f"valid values: {', '.join(map(str, divisors))}"
                )
        cap = self.logit_softcap
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap <= 0
        ):
            raise GptlabError(f"model.logit_softcap must be null or a number > 0, got {cap!r}")
        if self.pos == "rope" and self.head_dim % 2 != 0:
            raise GptlabError(
                f"model.pos = rope needs an even head_dim, but n_embd / n_head = {self.head_dim}; "
                "change n_embd or n_head"
            )

    def variant_changes(self) -> list[str]:
        """The architecture settings that differ from GPT-2, as "name=value" (empty for GPT-2)."""
        gpt2 = {f.name: f.default for f in dataclasses.fields(self)}
        changes = [
            f"{name}={getattr(self, name)!r}"
            for name in VARIANT_FIELDS
            if getattr(self, name) != gpt2[name]
        ]
        if self.n_kv_head is not None and self.n_kv_head != self.n_head:
            changes.append(f"n_kv_head={self.n_kv_head}")
        return changes

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads per layer: n_kv_head, or n_head when it is not set."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_multiple
        return ((self.vocab_size + m - 1) // m) * m

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GptlabError(
                f"unknown model config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# The switches that make a model something other than GPT-2 (n_kv_head is checked on its own:
# setting it equal to n_head is still GPT-2).
VARIANT_FIELDS = (
    "bias",
    "pos",
    "norm",
    "norm_placement",
    "mlp",
    "qk_norm",
    "tie_weights",
    "logit_softcap",
)


def _nearest_divisor(n: int, target: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d))


def model_preset(name: str, **overrides) -> ModelConfig:
    """The model of a named preset (its [model] table; see gptlab.presets), with overrides."""
    config = ModelConfig()
    apply_fields(config, load_preset(name).get("model", {}), f"preset {name}", prefix="model.")
    return dataclasses.replace(config, **overrides)  # replace() validates via __post_init__
