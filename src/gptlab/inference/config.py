"""How to decode: GenerationConfig (the knobs, checked on construction) and the finish reasons."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

from gptlab.errors import require
from gptlab.overrides import check_choice

FINISH_LENGTH = "length"  # max_new_tokens reached
FINISH_EOT = "eot"  # the model produced the end-of-text token
FINISH_STOP = "stop"  # one of the stop strings appeared

# The KV cache: one that grows, one preallocated (for torch.compile), or none (recompute the
# context every step: the reference the others are tested against).
CacheKind = Literal["dynamic", "static", "none"]
CACHE_KINDS: tuple[str, ...] = typing.get_args(CacheKind)  # the choices, for callers that list them


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. temperature 0 means greedy (argmax); None/1.0 switch a processor off."""

    max_new_tokens: int = 100
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # CTRL-style: > 1 makes tokens already in the text less likely
    num_samples: int = 1  # sequences per prompt
    seed: int | None = None  # seeds a torch.Generator: the same seed gives the same text
    stop_strings: tuple[str, ...] = ()  # the text is cut before the first one (needs a tokenizer)
    stop_at_eot: bool = True
    cache: CacheKind = "dynamic"
    compile: bool = False  # torch.compile the decode step (needs cache="static")

    def __post_init__(self) -> None:
        require(
            isinstance(self.max_new_tokens, int) and self.max_new_tokens > 0,
            f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}",
        )
        require(
            0 <= self.temperature < math.inf,
            f"temperature must be >= 0 and finite (0 means greedy), got {self.temperature!r}",
        )
        require(self.top_k is None or self.top_k >= 1, f"top_k must be >= 1, got {self.top_k!r}")
        require(
            0 < self.top_p <= 1, f"top_p must be in (0, 1] (1 switches it off), got {self.top_p!r}"
        )
        require(
            0 < self.repetition_penalty < math.inf,
            f"repetition_penalty must be > 0 and finite (1 switches it off), "
            f"got {self.repetition_penalty!r}",
        )
        require(self.num_samples >= 1, f"num_samples must be >= 1, got {self.num_samples!r}")
        require(
            self.seed is None or 0 <= self.seed < 2**63,
            f"seed must be in [0, 2**63), got {self.seed!r}",
        )
        require(all(self.stop_strings), "stop strings must not be empty")
        check_choice("cache", self.cache, CacheKind)  # declared by the field's Literal
        require(
            not self.compile or self.cache == "static",
            "compile needs the static cache (a growing cache changes shape every step): "
            "use cache='static'",
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
