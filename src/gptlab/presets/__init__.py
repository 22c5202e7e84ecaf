"""The named presets: one TOML file each, the only registry of presets.

A preset is a complete recipe ([model], [data], [train]); `gptlab train --preset NAME` starts from
it, and the model-shape uses (`gptlab params --preset NAME`, `gptlab sample --preset NAME`) read
only its [model] table. Adding a preset is adding a file here.
"""

from __future__ import annotations

import tomllib
from importlib import resources

from gptlab.errors import GptlabError


def preset_names() -> list[str]:
    folder = resources.files(__name__)
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_preset(name: str) -> dict:
    """The TOML table of a named preset."""
    path = resources.files(__name__) / f"{name}.toml"
    if not path.is_file():
        raise GptlabError(f"unknown preset {name!r}; valid presets: {', '.join(preset_names())}")
    return tomllib.loads(path.read_text(encoding="utf-8"))
