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


def head_grid_heatmap(path: str | Path, values, title: str, label: str) -> Path:
    """A layer x head heatmap, values (n_layer, n_head), on a scale centred on zero."""
    n_layer, n_head = values.shape
    return heatmap(
        path,
        np.asarray(values),
        title=title,
        xlabel="head",
        ylabel="layer",
        x_labels=[str(h) for h in range(n_head)],
        y_labels=[str(layer) for layer in range(n_layer)],
        colorbar_label=label,
        diverging=True,
    )


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
    title = "attention patterns (row: query position, column: key position)"
    figure.suptitle(fit_title(title, width=cell * n_cols + 1))
    return save_figure(figure, path)


def fit_title(title: str, width: float, fontsize: float = 12.0) -> str:
    """The title wrapped onto as many lines as a figure `width` inches wide needs (a narrow
    figure, e.g. a single attention head, would otherwise clip it at both edges)."""
    import textwrap

    # An average character of the default sans-serif font is about 0.55 em wide.
    chars_per_line = max(10, int(width * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.wrap(title, chars_per_line))


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


def line_plot(
    path: str | Path,
    x: Sequence[float],
    lines: dict[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    vlines: Sequence[float] = (),
) -> Path:
    """One or more named lines against x (a legend when several), dashed verticals at `vlines`."""
    figure = new_figure(8, 4)
    ax = figure.add_subplot()
    for label, y in lines.items():
        ax.plot(x, y, linewidth=1.2, marker="." if len(x) <= 200 else None, label=label)
    for position in vlines:
        ax.axvline(position, color="gray", linestyle="--", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend()
    return save_figure(figure, path)


def heatmap_panels(
    path: str | Path,
    panels: dict[str, np.ndarray],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    colorbar_label: str = "",
    value_range: tuple[float, float] | None = None,
    diverging: bool = False,
    tick_labels: tuple[Sequence[str], Sequence[str]] | None = None,
) -> Path:
    """Several same-shaped (rows, cols) heatmaps side by side, one shared colour scale, each
    panel titled by its key and each cell annotated with its value when the grid is small.
    tick_labels: (x labels, y labels); the column and row numbers by default."""
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in panels.items()}
    rows, cols = next(iter(arrays.values())).shape
    n = len(arrays)
    figure = new_figure(min(1.2 + n * (1.5 + 0.45 * cols), 30), min(2.2 + 0.4 * rows, 18))
    axes = figure.subplots(1, n, squeeze=False)[0]
    if diverging:
        finite = np.concatenate([np.abs(a[np.isfinite(a)]) for a in arrays.values()])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        vmin, vmax, cmap = -limit, limit, "RdBu_r"
    else:
        vmin, vmax = value_range if value_range is not None else (None, None)
        cmap = "viridis"
    annotate = rows * cols <= 64
    image = None
    for ax, (name, values) in zip(axes, arrays.items(), strict=True):
        image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        x_labels, y_labels = tick_labels or (
            list(map(str, range(cols))),
            list(map(str, range(rows))),
        )
        _label_axis(ax, "x", x_labels, cols)
        _label_axis(ax, "y", y_labels, rows)
        if annotate:
            for r in range(rows):
                for c in range(cols):
                    if np.isfinite(values[r, c]):
                        ax.text(
                            c,
                            r,
                            f"{values[r, c]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if not diverging else "black",
                        )
    figure.suptitle(title)
    figure.colorbar(image, ax=list(axes), label=colorbar_label)
    return save_figure(figure, path)
