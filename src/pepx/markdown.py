"""Plain-text formatting shared by every report pepx writes: numbers and GitHub Markdown tables.

Hand-written in a few lines instead of depending on `tabulate` (what `DataFrame.to_markdown` needs).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DASH = "–"


def fmt(value: object, digits: int = 3) -> str:
    """A number with ``digits`` decimals, ints as they are, NaN/None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, digits: int = 3, index: bool = False) -> str:
    """A GitHub Markdown table of ``frame`` (floats with ``digits`` decimals)."""
    if index:
        frame = frame.reset_index()
    head = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v, digits).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def text_table(frame: pd.DataFrame) -> str:
    """``frame`` as left-aligned plain-text columns two spaces apart, a header line first (the terminal)."""
    cells = [list(map(str, frame.columns))] + frame.astype(str).values.tolist()
    widths = [max(len(row[i]) for row in cells) for i in range(len(frame.columns))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines)
