"""Random number generators: one seed for all of them, and their state saved and restored.

Python's `random`, NumPy and torch (CPU, and CUDA when present) each keep a generator; a run that
seeds them all from one number repeats bit for bit on CPU, and a run that saves and restores all
of them resumes as if never stopped. The captured state is tensors and plain values only, so it
loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (NumPy takes seeds below 2**32)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict:
    """Every RNG a training step may draw from, as tensors and plain values."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy_key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
        "numpy_pos": numpy_state["state"]["pos"],
        "numpy_has_gauss": numpy_state["has_gauss"],
        "numpy_gauss": numpy_state["gauss"],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {
                "key": state["numpy_key"].numpy().astype(np.uint32),
                "pos": int(state["numpy_pos"]),
            },
            "has_gauss": int(state["numpy_has_gauss"]),
            "gauss": float(state["numpy_gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
