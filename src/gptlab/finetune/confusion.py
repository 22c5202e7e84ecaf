"""The confusion matrix of a classifier: counts, a plain-text table and a PNG heatmap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from gptlab.plotting import new_figure, save_figure
from gptlab.tables import markdown_table


def confusion_matrix(true: Sequence[int], predicted: Sequence[int], n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    matrix = torch.zeros(n_classes, n_classes, dtype=torch.long)
    for t, p in zip(true, predicted, strict=True):
        matrix[t, p] += 1
    return matrix


def confusion_table(matrix: torch.Tensor, labels: Sequence[str]) -> str:
    """A Markdown table (readable as plain text too), rows true, columns predicted."""
    rows = [[label, *(int(v) for v in row)] for label, row in zip(labels, matrix, strict=True)]
    return markdown_table(["true \\ predicted", *labels], rows)


def save_confusion_png(
    matrix: torch.Tensor, labels: Sequence[str], path: str | Path, title: str
) -> None:
    n = len(labels)
    fig = new_figure(1.6 + 1.1 * n, 1.2 + 1.0 * n)
    ax = fig.subplots()
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(n), labels=labels, rotation=45 if n > 4 else 0)
    ax.set_yticks(range(n), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max().item() / 2
    for i in range(n):
        for j in range(n):
            value = int(matrix[i, j])
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                color="white" if value > threshold else "black",
            )
    save_figure(fig, path, dpi=120)
