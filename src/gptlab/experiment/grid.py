"""The grid of an experiment: --vary parsing, the combinations, every run's config checked up front."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.overrides import resolve_key
from gptlab.train.config import RunConfig, build_run_config

RUNS_DIR = "runs"
# The grid decides these for every run alike; varying them would break the comparison.
FIXED_BY_EXPERIMENT = ("train.seed", "train.max_steps", "train.max_seconds")


@dataclass(frozen=True)
class Variation:
    key: str  # a dotted config key, e.g. model.norm
    values: tuple[str, ...]  # as typed, parsed by the key's type when applied


def parse_variation(text: str) -> Variation:
    """`model.norm=layernorm,rmsnorm` -> Variation; malformed text or an unknown key -> GptlabError."""
    key, sep, values_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise GptlabError(
            f"vary {text!r} is not of the form section.key=value1,value2 (e.g. model.norm=layernorm,rmsnorm)"
        )
    resolve_key(RunConfig(), key)  # an unknown key fails here, naming the nearest valid one
    if key in FIXED_BY_EXPERIMENT:
        raise GptlabError(
            f"vary {key} is not allowed: the experiment sets it for every run alike "
            "(use seeds and max_steps or max_seconds)"
        )
    values = tuple(value.strip() for value in values_text.split(",") if value.strip())
    if not values:
        raise GptlabError(f"vary {key}= gives no values; list them, e.g. {key}=A,B")
    if len(set(values)) != len(values):
        raise GptlabError(f"vary {key} lists a value twice ({values_text}); list each once")
    return Variation(key, values)


@dataclass(frozen=True)
class Combination:
    settings: tuple[tuple[str, str], ...]  # (dotted key, value) for each varied key

    @property
    def label(self) -> str:
        """For people: `norm=rmsnorm pos=rope`."""
        return " ".join(f"{key.partition('.')[2]}={value}" for key, value in self.settings)

    @property
    def folder_name(self) -> str:
        """For the file system: `norm-rmsnorm_pos-rope` (anything but [A-Za-z0-9.+-] becomes _)."""
        parts = (f"{key.partition('.')[2]}-{value}" for key, value in self.settings)
        return re.sub(r"[^A-Za-z0-9.+-]", "_", "_".join(parts))

    @property
    def overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.settings]


def combinations(variations: list[Variation]) -> list[Combination]:
    if not variations:
        raise GptlabError(
            "the grid is empty: give at least one vary setting section.key=value1,value2"
        )
    keys = [v.key for v in variations]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise GptlabError(
            f"vary {repeated[0]} is given twice; list all its values in one vary setting"
        )
    return [
        Combination(tuple(zip(keys, values, strict=True)))
        for values in itertools.product(*(v.values for v in variations))
    ]


@dataclass
class PlannedRun:
    combination: Combination
    seed: int
    config: RunConfig
    run_dir: Path


def plan_runs(
    variations: list[Variation],
    *,
    seeds: int,
    out: str | Path,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    budget: list[str] | None = None,
) -> list[PlannedRun]:
    """Build and validate every run's config before anything trains: one bad combination stops all.

    budget: overrides that set the equal budget (e.g. ["train.max_steps=500", "train.max_seconds=none"]);
    none keeps the base config's budget, which is then the same for every run anyway.
    """
    if seeds < 1:
        raise GptlabError(f"seeds must be >= 1, got {seeds}")
    # Only the combinations must be valid: the base alone may need a varied key to make sense
    # (e.g. --vary train.tokens_per_step=2048,4096 over a base whose batch does not divide 1024).
    base = build_run_config(
        preset, config_file, [*(overrides or []), *(budget or [])], validate=False
    )
    first_seed = base.train.seed  # seeds first_seed, first_seed + 1, ...: --seeds 1 is the base run
    planned = []
    for combination in combinations(variations):
        for seed in range(first_seed, first_seed + seeds):
            try:
                config = build_run_config(
                    preset,
                    config_file,
                    [
                        *(overrides or []),
                        *(budget or []),
                        *combination.overrides,
                        f"train.seed={seed}",
                    ],
                )
            except GptlabError as exc:
                raise GptlabError(f"combination {combination.label}: {exc}") from None
            run_dir = Path(out) / RUNS_DIR / f"{combination.folder_name}-seed{seed}"
            planned.append(PlannedRun(combination, seed, config, run_dir))
    return planned
