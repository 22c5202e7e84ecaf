"""Activation patching: which activations carry the information that changes the answer?

Run a clean prompt and a corrupted one (same number of tokens, differing in a detail that flips
the answer). Then rerun the corrupted prompt with one activation replaced by its clean value and
see how much of the clean behaviour comes back:

    score = (metric(patched) - metric(corrupted)) / (metric(clean) - metric(corrupted))

1 means this activation alone restores the clean answer, 0 means it does nothing. Two sweeps:
- the residual stream entering each layer (`hook_resid_pre`), one position at a time;
- each head's output (`hook_z`), at all positions at once.
Patches run side by side as rows of one batch (rows_per_batch at a time), and only the last
position's logits are computed, since the metric reads nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.errors import GptlabError
from gptlab.plotting import head_grid_heatmap, heatmap
from gptlab.tables import format_table, quoted, ranked_cells

# metric(logits (B, T, V)) -> (B,): one number per sequence, read at the last position.
Metric = Callable[[torch.Tensor], torch.Tensor]


def logit_difference(answer_id: int, wrong_id: int) -> Metric:
    """logit(answer) - logit(wrong) at the last position."""
    return lambda logits: logits[:, -1, answer_id].float() - logits[:, -1, wrong_id].float()


def answer_probability(answer_id: int) -> Metric:
    """probability of the answer at the last position."""
    return lambda logits: logits[:, -1].float().softmax(dim=-1)[:, answer_id]


# Gaps between the clean and the corrupted metric within this many units of rounding of the
# model's dtype (relative to the metrics, at least 1) are noise: the two runs take different code
# paths (cached, last position only), so even equal prompts differ in the last bits.
ROUNDING_UNITS = 8


def require_restorable(clean_metric: float, corrupted_metric: float, model) -> None:
    """Refuse, before the sweep, a clean and corrupted run that score the same: the restored
    fraction (metric - corrupted) / (clean - corrupted) would divide by rounding noise and read
    1.0000 (or NaN) everywhere."""
    rounding = torch.finfo(next(model.parameters()).dtype).eps
    scale = max(1.0, abs(clean_metric), abs(corrupted_metric))
    if abs(clean_metric - corrupted_metric) <= ROUNDING_UNITS * rounding * scale:
        raise GptlabError(
            f"the clean and corrupted runs score the same ({clean_metric:.4f} vs "
            f"{corrupted_metric:.4f}), so nothing can be restored and every score would be "
            "undefined; corrupt the prompt where it changes the answer"
        )


@dataclass
class PatchingResult:
    clean_metric: float
    corrupted_metric: float
    resid: torch.Tensor  # (n_layer, T) metric with resid_pre of (layer, position) patched
    heads: torch.Tensor  # (n_layer, n_head) metric with hook_z of (layer, head) patched

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """clean -> 1, corrupted -> 0 (NaN when clean and corrupted score the same)."""
        span = self.clean_metric - self.corrupted_metric
        return (
            (raw - self.corrupted_metric) / span
            if span != 0
            else torch.full_like(raw, float("nan"))
        )

    def to_dict(self) -> dict:
        return {
            "clean_metric": self.clean_metric,
            "corrupted_metric": self.corrupted_metric,
            "resid_metric": self.resid.tolist(),
            "heads_metric": self.heads.tolist(),
            "resid_score": self.normalise(self.resid).tolist(),
            "heads_score": self.normalise(self.heads).tolist(),
        }


def check_same_length(
    clean: list[int], corrupted: list[int], clean_labels: list[str], corrupted_labels: list[str]
) -> None:
    if len(clean) != len(corrupted):
        raise GptlabError(
            f"clean and corrupted prompts must have the same number of tokens to patch position by "
            f"position, but clean is {len(clean)} tokens {clean_labels} and corrupted is "
            f"{len(corrupted)} tokens {corrupted_labels}; reword one of them"
        )


@torch.no_grad()
def activation_patching(
    model,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    metric: Metric,
    progress: bool = True,
    rows_per_batch: int = 32,
) -> PatchingResult:
    """Patch clean activations into the corrupted run. clean, corrupted: (1, T), same T.

    rows_per_batch: how many patched copies of the corrupted prompt run side by side.
    """
    if clean.shape != corrupted.shape:
        raise GptlabError(
            f"clean and corrupted prompts must have the same number of tokens ({clean.shape[1]} "
            f"vs {corrupted.shape[1]})"
        )
    n_layer, n_head = model.config.n_layer, model.config.n_head
    T = clean.shape[1]
    names = ["blocks.*.hook_resid_pre", "blocks.*.attn.hook_z"]
    clean_logits, clean_cache = model.run_with_cache(clean, names=names)
    corrupted_logits, _ = model(corrupted)
    require_restorable(float(metric(clean_logits)[0]), float(metric(corrupted_logits)[0]), model)

    n_batches = n_layer * (-(-T // rows_per_batch) + -(-n_head // rows_per_batch))
    bar = tqdm(total=n_batches, desc="patching", unit="batch", disable=not progress)

    def sweep(hook_name: str, make_hook, n_patches: int) -> torch.Tensor:
        """metric with patch i applied, for i in range(n_patches): (n_patches,)."""
        scores = []
        for start in range(0, n_patches, rows_per_batch):
            patches = torch.arange(
                start, min(start + rows_per_batch, n_patches), device=clean.device
            )
            with model.hooks({hook_name: make_hook(patches)}):
                # Only the last position's logits feed the metric; skip the rest (B x T x V).
                logits, _ = model(corrupted.expand(len(patches), T), only_last=True)
            scores.append(metric(logits).float().cpu())
            bar.update()
        return torch.cat(scores)

    resid = torch.zeros(n_layer, T)
    heads = torch.zeros(n_layer, n_head)
    for layer in range(n_layer):
        clean_resid = clean_cache[f"blocks.{layer}.hook_resid_pre"][0]  # (T, C)
        resid[layer] = sweep(
            f"blocks.{layer}.hook_resid_pre", partial(patch_positions, clean_resid), T
        )
        clean_z = clean_cache[f"blocks.{layer}.attn.hook_z"][0]  # (T, H, D)
        heads[layer] = sweep(f"blocks.{layer}.attn.hook_z", partial(patch_heads, clean_z), n_head)
    bar.close()
    return PatchingResult(
        clean_metric=float(metric(clean_logits)[0]),
        corrupted_metric=float(metric(corrupted_logits)[0]),
        resid=resid,
        heads=heads,
    )


def patch_positions(clean_resid: torch.Tensor, positions: torch.Tensor):
    """A hook for a batch of copies of the corrupted run: row i gets the clean residual stream
    clean_resid (T, C) at position positions[i] only."""

    def patch(x: torch.Tensor, name: str) -> torch.Tensor:  # x: (rows, T, C)
        rows = torch.arange(x.shape[0], device=x.device)
        x = x.clone()
        x[rows, positions] = clean_resid[positions]
        return x

    return patch


def patch_heads(clean_z: torch.Tensor, heads: torch.Tensor):
    """A hook for a batch of copies: row i gets head heads[i]'s clean output (clean_z: (T, H, D))
    at every position."""
    clean_by_head = clean_z.transpose(0, 1)[heads]  # (rows, T, D)

    def patch(z: torch.Tensor, name: str) -> torch.Tensor:  # z: (rows, T, H, D)
        rows = torch.arange(z.shape[0], device=z.device)
        z = z.clone()
        z[rows, :, heads] = clean_by_head
        return z

    return patch


def save_patching_heatmaps(
    directory: str | Path, result: PatchingResult, tokens: list[str], metric_name: str
) -> list[Path]:
    """patch_resid.png (layer x position) and patch_heads.png (layer x head) of the normalised score."""
    directory = Path(directory)
    n_layer = result.heads.shape[0]
    layers = [str(layer) for layer in range(n_layer)]
    subtitle = (
        f"{metric_name}: clean {result.clean_metric:.3f}, corrupted {result.corrupted_metric:.3f}"
    )
    return [
        heatmap(
            directory / "patch_resid.png",
            result.normalise(result.resid).numpy(),
            title=f"patching resid_pre by layer and position\n{subtitle}",
            xlabel="position (clean token)",
            ylabel="layer",
            x_labels=tokens,
            y_labels=layers,
            colorbar_label="restored (clean = 1, corrupted = 0)",
            diverging=True,
        ),
        head_grid_heatmap(
            directory / "patch_heads.png",
            result.normalise(result.heads),
            f"patching each head's output (all positions)\n{subtitle}",
            "restored (clean = 1, corrupted = 0)",
        ),
    ]


def patching_tables(result: PatchingResult, tokens: list[str], metric_name: str, top_k: int) -> str:
    """The clean and corrupted metric, then the top_k patches of each sweep by restored score."""
    lines = [
        f"{metric_name}: clean {result.clean_metric:.4f}, corrupted {result.corrupted_metric:.4f}"
    ]
    if result.clean_metric == result.corrupted_metric:
        lines.append(
            "clean and corrupted score the same: no patch can restore anything (scores are NaN)"
        )
    sweeps = (
        (
            "residual stream (resid_pre)",
            result.resid,
            lambda layer, t: f"L{layer} pos {t} {quoted(tokens[t])}",
        ),
        ("heads (hook_z, all positions)", result.heads, lambda layer, h: f"L{layer}H{h}"),
    )
    for title, raw, label in sweeps:
        score = result.normalise(raw)
        rows = [
            [label(r, c), float(raw[r, c]), float(score[r, c])]
            for r, c in ranked_cells(score, top_k)
        ]
        lines += [
            "",
            f"patching {title}, most restoring first:",
            format_table(["patched", "metric", "restored"], rows),
        ]
    return "\n".join(lines)
