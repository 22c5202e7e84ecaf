"""Tables: plain text for the terminal (columns padded to their widest cell) and Markdown for
result files (readable as plain text too, rendered by any Markdown viewer). No dependency."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns separated by two spaces; numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(row[i], int | float) for row in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(row: list[str]) -> str:
        parts = [
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align: str = ""
) -> str:
    """A Markdown table; `align` has one letter per column, l or r (default: l for the first
    column, r for the others, as results tables read best)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", rule]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def ranked_cells(values, k: int) -> list[tuple[int, int]]:
    """(row, column) of the k largest entries of a 2-D tensor, largest first, NaN last."""
    flat = values.nan_to_num(nan=float("-inf")).flatten()
    width = values.shape[1]
    return [(int(i) // width, int(i) % width) for i in flat.argsort(descending=True)[:k]]


def _cell(value: object) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


def format_number(value: float, decimals: int = 4) -> str:
    """Fixed decimals, unless that would print a small nonzero number as 0.000..."""
    return f"{value:.2e}" if 0 < abs(value) < 10 ** -(decimals - 1) else f"{value:.{decimals}f}"


def quoted(label: str) -> str:
    """A token label in quotes so leading spaces show: ' Paris' -> "' Paris'"."""
    return f"'{label}'"
