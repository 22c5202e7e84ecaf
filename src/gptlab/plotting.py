"""PNG pictures: the one matplotlib set-up, and the heatmaps, attention grid and bar charts of
the interpretability tools. Training curves, the confusion matrix and the generation benchmark
draw on the same figures.

matplotlib is optional (the `plot` extra) and imported here, when a picture is drawn. Figures are
built with matplotlib.figure.Figure directly, not pyplot, so no global backend or window state is
involved (the Agg renderer draws to the file), and each file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gptlab.fileio import atomic_write
from gptlab.optional import import_optional

# Past this many rows/columns, tick labels overlap; show every n-th one instead.
MAX_TICK_LABELS = 40


def new_figure(width: float, height: float):
    figure_module = import_optional("matplotlib.figure", "plot")
    return figure_module.Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_figure(figure, path: str | Path, dpi: int | None = None) -> Path:
    """Write the figure as a PNG, atomically (dpi: the figure's own unless given)."""
    path = Path(path)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi or "figure"))
    return path


def color_cycle() -> list[str]:
    """matplotlib's default line colours, to give each run one colour across its curves."""
    matplotlib = import_optional("matplotlib", "plot")
    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def _label_axis(ax, axis: str, labels: Sequence[str] | None, count: int) -> None:
    """Tick labels on the x or y axis, thinned to at most MAX_TICK_LABELS."""
    if labels is None:
        return
    step = max(1, -(-count // MAX_TICK_LABELS))
    positions = list(range(0, count, step))
    shown = [labels[i] for i in positions]
    if axis == "x":
        ax.set_xticks(positions)
        ax.set_xticklabels(shown, rotation=60, ha="right", rotation_mode="anchor", fontsize=7)
    else:
        ax.set_yticks(positions)
        ax.set_yticklabels(shown, fontsize=7)


def heatmap(
    path: str | Path,
    values: np.ndarray,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    colorbar_label: str = "",
    diverging: bool = False,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """One (rows, cols) heatmap.

    diverging: a red/blue scale centred on zero (effects, deltas). value_range: fixed colour
    limits (e.g. (0, 1) for probabilities, so pictures of different prompts compare).
    """
    values = np.asarray(values, dtype=np.float64)
    rows, cols = values.shape
    figure = new_figure(min(3 + 0.35 * cols, 24), min(2.5 + 0.3 * rows, 18))
    ax = figure.add_subplot()
    if diverging:
        finite = np.abs(values[np.isfinite(values)])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    else:
        vmin, vmax = value_range if value_range is not None else (None, None)
        image = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _label_axis(ax, "x", x_labels, cols)
    _label_axis(ax, "y", y_labels, rows)
    figure.colorbar(image, ax=ax, label=colorbar_label)
    return save_figure(figure, path)


def attention_grid(
    path: str | Path,
    patterns: np.ndarray,
    *,
    layers: Sequence[int],
    heads: Sequence[int],
    tokens: Sequence[str],
) -> Path:
    """A grid of attention patterns: one row per layer, one column per head, each (T, T).

    patterns: (len(layers), len(heads), T, T). Token labels are drawn only when the grid is small
    enough for them to be read.
    """
    n_rows, n_cols, T, _ = patterns.shape
    cell = 2.2 if n_rows * n_cols > 16 else 3.5
    figure = new_figure(cell * n_cols + 1, cell * n_rows + 0.6)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    label_tokens = n_rows * n_cols <= 4 and T <= MAX_TICK_LABELS
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r][c]
            ax.imshow(patterns[r, c], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"L{layer} H{head}", fontsize=8)
            if label_tokens:
                ax.set_xticks(range(T))
                ax.set_xticklabels(tokens, rotation=90, fontsize=7)
                ax.set_yticks(range(T))
                ax.set_yticklabels(tokens, fontsize=7)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    figure.suptitle("attention patterns (row: query position, column: key position)")
    return save_figure(figure, path)


def bar_chart(
    path: str | Path, labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str
) -> Path:
    """Horizontal bars, one per label, red for positive and blue for negative values."""
    values = np.asarray(values, dtype=np.float64)
    figure = new_figure(8, min(1.5 + 0.22 * len(labels), 30))
    ax = figure.add_subplot()
    positions = np.arange(len(labels))
    ax.barh(positions, values, color=np.where(values >= 0, "#c0392b", "#2c7bb6"))
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()  # first label on top
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return save_figure(figure, path)
