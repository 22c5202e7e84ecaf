"""Typed configuration: the model's shape, validated, and named presets.

Everything a model needs to be rebuilt is in ModelConfig, which is saved as JSON next to the
weights. Validation happens at construction, so a bad value fails with a clear message before any
tensor is allocated.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from gptlab.errors import GptlabError
from gptlab.overrides import apply_table, check_fields, setting
from gptlab.presets import load_preset

# The choices of each switch; the first value of each variant is GPT-2's.
Attention = Literal["sdpa", "explicit"]
PositionEncoding = Literal["learned", "rope", "none"]
Norm = Literal["layernorm", "rmsnorm"]
NormPlacement = Literal["pre", "post"]
Mlp = Literal["gelu", "swiglu", "relu2"]

POSITIVE = "a positive integer"


@dataclass
class ModelConfig:
    vocab_size: int = setting(50257, ge=1, says=POSITIVE)
    # the longest context the model sees (learned positions)
    block_size: int = setting(1024, ge=1, says=POSITIVE)
    n_layer: int = setting(12, ge=1, says=POSITIVE)
    n_head: int = setting(12, ge=1, says=POSITIVE)
    n_embd: int = setting(768, ge=1, says=POSITIVE)
    dropout: float = setting(0.0, ge=0, lt=1)
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    layer_norm_eps: float = setting(1e-5, gt=0)
    # Round the embedding/head rows up to a multiple of this (64 helps GPU matmuls). The extra rows
    # are sliced off the logits, so they are never sampled and never enter the loss.
    pad_vocab_multiple: int = setting(1, ge=1, says=POSITIVE)
    # "sdpa": torch's fused scaled_dot_product_attention (flash kernels on GPU);
    # "explicit": softmax(QK^T/sqrt(d))V written out, materialising the attention weights.
    attention: Attention = "sdpa"
    # Architecture variants (see gptlab.model.*). The defaults are exactly GPT-2.
    pos: PositionEncoding = "learned"  # learned embedding, rope (rotary), none (causal mask only)
    # with pos = rope: half of each head's feature pairs do not rotate (see positions.py)
    rope_truncated: bool = False
    norm: Norm = "layernorm"
    norm_placement: NormPlacement = "pre"  # "pre": x + f(norm(x)); "post": norm(x + f(x)), 2017
    mlp: Mlp = "gelu"
    # Key/value heads; fewer than n_head is grouped-query attention.
    n_kv_head: int | None = setting(None, ge=1, says="a positive integer or null (= n_head)")
    qk_norm: bool = False  # normalise each head's queries and keys before the dot product
    # What q.k is multiplied by before the softmax; none is GPT-2's 1/sqrt(head_dim). With qk_norm
    # a logit is at most sqrt(head_dim) x the norms' gains (5.7 for heads of 32), so small heads
    # attend softly until their gains grow; a larger scale sharpens them from the first step
    # (modded-nanogpt uses 0.12 for heads of 128, 1.36 / sqrt(128)).
    attn_scale: float | None = setting(None, gt=0, says="null (1/sqrt(head_dim)) or a number > 0")
    tie_weights: bool = True  # lm_head shares the token embedding's matrix
    # logits = cap * tanh(logits / cap) when set
    logit_softcap: float | None = setting(None, gt=0, says="null or a number > 0")
    # The speedrun's small-model additions (modded-nanogpt, nanochat; see embeddings.py). Each
    # enters through a learned scale or gate that starts at zero, so at initialisation the model
    # computes what it would without them.
    bigram_embed: bool = False  # a (previous token, token) table added before every block
    # none: the exact table, a row per pair (small vocabularies only); N: N rows, each pair
    # hashed to one of them (modded-nanogpt's bigram hash embedding), for BPE vocabularies.
    bigram_buckets: int | None = setting(
        None, ge=2, says="an integer >= 2 (rows of the hashed bigram table), or none (exact)"
    )
    # none: no trigram; N: a second table of N rows, each (token two back, previous, token)
    # triple hashed to one, added to the bigram rows (needs bigram_embed).
    trigram_buckets: int | None = setting(
        None, ge=2, says="an integer >= 2 (rows of the hashed trigram table), or none"
    )
    value_embed: bool = False  # per-layer token tables added to the values, alternate layers
    x0_blend: bool = False  # before block i: x = a_i * x + b_i * x0 (the embedding output)
    smear: bool = False  # each token embedding adds a gated share of the previous one

    def __post_init__(self) -> None:
        check_fields(self, "model.")
        self.validate()

    def validate(self) -> None:
        """The rules between fields (each field's own type, choices and bounds are declared)."""
        if self.n_embd % self.n_head != 0:
            raise GptlabError(
                f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head}); "
                f"try n_head={_nearest_divisor(self.n_embd, self.n_head)}"
            )
        if self.n_kv_head is not None and self.n_head % self.n_kv_head != 0:
            divisors = [d for d in range(1, self.n_head + 1) if self.n_head % d == 0]
            raise GptlabError(
                f"model.n_kv_head ({self.n_kv_head}) must divide model.n_head ({self.n_head}); "
                f"valid values: {', '.join(map(str, divisors))}"
            )
        if self.pos == "rope" and self.head_dim % 2 != 0:
            raise GptlabError(
                f"model.pos = rope needs an even head_dim, but n_embd / n_head = {self.head_dim}; "
                "change n_embd or n_head"
            )

        if self.rope_truncated and self.pos != "rope":
            raise GptlabError(
                f"model.rope_truncated changes rotary positions, but model.pos = {self.pos}: "
                "set model.pos=rope as well, or model.rope_truncated=false"
            )
        if self.bigram_buckets is not None and not self.bigram_embed:
            raise GptlabError(
                f"model.bigram_buckets={self.bigram_buckets} sizes the bigram table, which is off: "
                "set model.bigram_embed=true as well, or model.bigram_buckets=none"
            )
        if self.trigram_buckets is not None and not self.bigram_embed:
            raise GptlabError(
                f"model.trigram_buckets={self.trigram_buckets} adds its rows to the bigram "
                "table's, which is off: set model.bigram_embed=true as well, or "
                "model.trigram_buckets=none"
            )
        if self.trigram_parameters > BIGRAM_MAX_PARAMETERS:
            raise GptlabError(
                f"model.trigram_buckets={self.trigram_buckets} x n_embd {self.n_embd} = "
                f"{self.trigram_parameters:,} parameters, over the limit of "
                f"{BIGRAM_MAX_PARAMETERS:,}: use fewer buckets"
            )
        if self.bigram_embed and self.bigram_parameters > BIGRAM_MAX_PARAMETERS:
            if self.bigram_buckets is not None:
                raise GptlabError(
                    f"model.bigram_buckets={self.bigram_buckets} x n_embd {self.n_embd} = "
                    f"{self.bigram_parameters:,} parameters, over the limit of "
                    f"{BIGRAM_MAX_PARAMETERS:,}: use fewer buckets"
                )
            raise GptlabError(
                f"model.bigram_embed needs a table of (vocab_size + 1) x vocab_size rows of n_embd "
                f"= {self.vocab_size + 1} x {self.vocab_size} x {self.n_embd} = "
                f"{self.bigram_parameters:,} parameters, over the limit of "
                f"{BIGRAM_MAX_PARAMETERS:,}; the exact table is meant for small (character-level) "
                "vocabularies: hash the pairs into fewer rows (model.bigram_buckets=N, e.g. "
                "2 x vocab_size) or set model.bigram_embed=false"
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

    def stream_extras(self) -> list[str]:
        """The STREAM_EXTRAS switched on, as "name=true" (empty for a model whose residual
        stream is the sum of its embeddings and its blocks' outputs)."""
        return [f"{name}=true" for name in STREAM_EXTRAS if getattr(self, name)]

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def attention_scale(self) -> float:
        """The attention logits' multiplier: attn_scale, or 1/sqrt(head_dim) when it is not set."""
        return 1.0 / math.sqrt(self.head_dim) if self.attn_scale is None else self.attn_scale

    @property
    def kv_heads(self) -> int:
        """Key/value heads per layer: n_kv_head, or n_head when it is not set."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def tokens_read_back(self) -> int:
        """How many tokens before each position the model reads besides attention: 2 with a
        trigram table, 1 with bigram_embed or smear, 0 otherwise."""
        if self.trigram_buckets is not None:
            return 2
        return 1 if self.bigram_embed or self.smear else 0

    @property
    def bigram_parameters(self) -> int:
        """The bigram table's size: a row per (previous token or none, token) pair, or
        bigram_buckets rows when the pairs are hashed."""
        if self.bigram_buckets is not None:
            return self.bigram_buckets * self.n_embd
        return (self.vocab_size + 1) * self.vocab_size * self.n_embd

    @property
    def trigram_parameters(self) -> int:
        """The hashed trigram table's size (0 without one)."""
        return 0 if self.trigram_buckets is None else self.trigram_buckets * self.n_embd

    def value_embed_layers(self) -> list[int]:
        """The layers with a value embedding: every other one, counting down from the last."""
        if not self.value_embed:
            return []
        return [i for i in range(self.n_layer) if (self.n_layer - 1 - i) % 2 == 0]

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
    "rope_truncated",
    "norm",
    "norm_placement",
    "mlp",
    "qk_norm",
    "attn_scale",
    "tie_weights",
    "logit_softcap",
    "bigram_embed",
    "bigram_buckets",
    "trigram_buckets",
    "value_embed",
    "x0_blend",
    "smear",
)
# The settings that write into the residual stream outside the blocks' attention and MLP outputs
# (or into the values from outside the stream): tools that split the stream or a head's values
# into its sources must refuse them.
STREAM_EXTRAS = ("bigram_embed", "value_embed", "x0_blend", "smear")

# The bigram table grows as vocab_size squared: 65 characters x 64 wide is 0.27M parameters,
# GPT-2's 50,257 tokens would be 1.9 trillion. Past this it is a mistake, not a model (the
# same limit holds for the hashed trigram table).
BIGRAM_MAX_PARAMETERS = 64_000_000


def _nearest_divisor(n: int, target: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d))


def model_preset(name: str, **overrides) -> ModelConfig:
    """The model of a named preset (its [model] table; see gptlab.presets), with overrides."""
    config = ModelConfig()
    apply_table(config, load_preset(name).get("model", {}), f"preset {name}", prefix="model.")
    return dataclasses.replace(config, **overrides)  # replace() validates via __post_init__
