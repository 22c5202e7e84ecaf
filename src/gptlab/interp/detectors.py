"""Head detectors: how closely each head's attention follows a target pattern.

On a batch of sequences (usually random tokens repeated, see interp/induction.py), each detector
builds a target matrix per sequence from its tokens alone, never from particular token ids:

- previous-token: query i -> key i - 1;
- duplicate-token: query i -> every earlier key j < i holding the same token;
- induction: query i -> every key j (1 <= j <= i) whose *preceding* token equals token i, i.e. the
  token that came after an earlier occurrence of the current token;
- a custom (T, T) pattern from a file (`load_target_pattern`), the same for every sequence.

A head's score is the attention mass it puts on target positions, averaged over the (sequence,
query) rows where the target has any nonzero entry: 1 for a head that does exactly what the
detector looks for, 0 for one that never does. (TransformerLens' `detect_head` divides by every
row instead, so its induction score on two copies can reach only about 0.5; averaging over the
rows where the behaviour is possible makes scores of different detectors comparable, and is the
"induction stripe" score of the TransformerLens tutorials.) Patterns are read from
`blocks.*.attn.hook_pattern`; no position is dropped (there is no BOS token to exclude).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from gptlab.errors import GptlabError
from gptlab.fileio import loads_json, read_text
from gptlab.plotting import heatmap_panels
from gptlab.tables import format_table, ranked_cells


def previous_token_target(tokens: torch.Tensor) -> torch.Tensor:
    """(T,) ids -> (T, T): 1 at (i, i - 1)."""
    T = tokens.shape[0]
    return torch.ones(T - 1).diag(-1) if T > 1 else torch.zeros(1, 1)


def duplicate_token_target(tokens: torch.Tensor) -> torch.Tensor:
    """(T,) ids -> (T, T): 1 at (i, j) for j < i with tokens[j] == tokens[i]."""
    same = tokens[:, None] == tokens[None, :]
    return (same & earlier_keys(len(tokens), strict=True)).float()


def induction_target(tokens: torch.Tensor) -> torch.Tensor:
    """(T,) ids -> (T, T): 1 at (i, j) for 1 <= j <= i with tokens[j - 1] == tokens[i]."""
    T = tokens.shape[0]
    target = torch.zeros(T, T)
    if T > 1:
        follows_match = tokens[:, None] == tokens[None, :-1]  # (i, j - 1): token j-1 equals token i
        target[:, 1:] = (follows_match & earlier_keys(T, strict=True)[:, :-1]).float()
    return target


def earlier_keys(T: int, strict: bool) -> torch.Tensor:
    """(T, T) bool: key j lies before query i (j < i), or at or before it when not strict."""
    return torch.ones(T, T, dtype=torch.bool).tril(-1 if strict else 0)


# name -> target pattern of one sequence; the JSON and the CLI use these names.
DETECTORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "previous-token": previous_token_target,
    "duplicate-token": duplicate_token_target,
    "induction": induction_target,
}


def parse_detectors(text: str) -> list[str]:
    """'previous-token,induction' -> the names, each checked."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in DETECTORS]
    if unknown or not names:
        raise GptlabError(
            f"unknown detector {', '.join(unknown) or repr(text)}: use a comma-separated list of "
            f"{', '.join(DETECTORS)}"
        )
    return list(dict.fromkeys(names))


def load_target_pattern(path: str | Path, length: int) -> torch.Tensor:
    """A custom target: a JSON (T, T) list of lists of weights in [0, 1], T == length, causal."""
    import json

    try:
        rows = loads_json(read_text(path, "pattern file"))
        target = torch.tensor(rows, dtype=torch.float32)
    except (json.JSONDecodeError, TypeError, ValueError, RuntimeError):
        raise GptlabError(
            f"pattern file {path} is not a JSON list of equally long lists of numbers "
            "(row i: how much query i should attend to each key j)"
        ) from None
    if target.dim() != 2 or target.shape != (length, length):
        raise GptlabError(
            f"pattern file {path} holds a {tuple(target.shape)} array but the sequences are "
            f"{length} tokens: give a ({length}, {length}) matrix, or change the length or the repeats"
        )
    if not bool(((target >= 0) & (target <= 1)).all()):
        raise GptlabError(f"pattern file {path} has weights outside [0, 1]")
    if bool((target.triu(1) != 0).any()):
        raise GptlabError(
            f"pattern file {path} asks queries to attend to later keys, which the causal mask "
            "forbids: keep every nonzero weight at or below the diagonal"
        )
    return target


@torch.no_grad()
def attention_batch(model, idx: torch.Tensor) -> torch.Tensor:
    """Attention weights of every sequence: (n_layer, B, n_head, T, T), float32 on the CPU."""
    _, cache = model.run_with_cache(idx, names=["blocks.*.attn.hook_pattern"])
    return torch.stack(
        [cache[f"blocks.{i}.attn.hook_pattern"].float().cpu() for i in range(model.config.n_layer)]
    )


def pattern_score(patterns: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """patterns (n_layer, B, H, T, T), targets (B, T, T) -> (n_layer, H) mean mass on target,
    over the rows whose target is not all zero (NaN when no row has a target)."""
    mass = (patterns * targets[None, :, None]).sum(dim=-1)  # (n_layer, B, H, T)
    rows = (targets.sum(dim=-1) > 0).float()  # (B, T)
    count = rows.sum()
    if count == 0:
        return torch.full(patterns.shape[0:1] + patterns.shape[2:3], float("nan"))
    return (mass * rows[None, :, None]).sum(dim=(1, 3)) / count


def detect_heads(
    model,
    idx: torch.Tensor,
    detectors: Sequence[str] = tuple(DETECTORS),
    custom: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """{detector name: (n_layer, n_head) score} on the sequences idx (B, T); custom: a (T, T)
    target scored as "custom"."""
    patterns = attention_batch(model, idx)
    ids = idx.cpu()
    scores = {}
    for name in detectors:
        targets = torch.stack([DETECTORS[name](row) for row in ids])
        scores[name] = pattern_score(patterns, targets)
    if custom is not None:
        scores["custom"] = pattern_score(patterns, custom.expand(ids.shape[0], -1, -1))
    return scores


def detector_table(scores: dict[str, torch.Tensor], top_k: int | None = None) -> str:
    """One row per head (or the top_k by the last detector), one column per detector."""
    names = list(scores)
    last = scores[names[-1]]
    n_layer, n_head = last.shape
    cells = (
        ranked_cells(last, top_k)
        if top_k
        else [(layer, h) for layer in range(n_layer) for h in range(n_head)]
    )
    rows = [[layer, h] + [float(scores[n][layer, h]) for n in names] for layer, h in cells]
    return format_table(["layer", "head", *names], rows)


def save_detector_heatmaps(path: str | Path, scores: dict[str, torch.Tensor]) -> Path:
    """One PNG: the detectors side by side, layer x head each, on a shared 0..1 scale."""
    return heatmap_panels(
        path,
        {name: values.numpy() for name, values in scores.items()},
        title="head detector scores (attention mass on the target pattern)",
        xlabel="head",
        ylabel="layer",
        colorbar_label="score",
        value_range=(0.0, 1.0),
    )
