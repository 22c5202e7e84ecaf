"""The small real files the repository ships under data/samples, found from the package's place.

A clone (or an editable install) has them beside src/; an installed wheel does not. Code that
would otherwise download a file asks here first, so the README's commands and the tests run on a
machine with no network, and downloads only what the repository does not ship. A shipped file is
used only when its sha256 is the canonical one, so an edited copy is never taken for the original.
"""

from __future__ import annotations

from pathlib import Path

from gptlab.fileio import sha256_file

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data" / "samples"


def shipped_file(relative_path: str, sha256: str) -> Path | None:
    """data/samples/`relative_path` when the repository ships it with this sha256, else None."""
    path = SAMPLES_DIR / relative_path
    if path.is_file() and sha256_file(path) == sha256:
        return path
    return None
