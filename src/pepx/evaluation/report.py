"""Markdown and JSON writers shared by `pepx evaluate` and `pepx reproduce` (no tabulate dependency)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASS_DISPLAY, CLASSES
from pepx.fileio import write_text
from pepx.markdown import DASH, fmt, markdown_table


def fmt_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    """``0.957 [0.930, 0.977]``, or a dash where the value is undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{fmt(value, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def class_label(name: str) -> str:
    """``recall_COVID-19`` -> ``recall COVID-19``; class keys shown with the paper's display names."""
    for cls, display in zip(CLASSES, CLASS_DISPLAY, strict=True):
        if name.endswith(f"_{cls}"):
            return f"{name[: -len(cls) - 1]} {display}"
    return name


def metrics_markdown(table: pd.DataFrame, level: float = 0.95) -> str:
    """``metric | value | 95 % CI`` table from a ``metric, value, low, high`` frame."""
    rows = pd.DataFrame({
        "metric": [class_label(m) for m in table["metric"]],
        "value": table["value"],
        f"{int(level * 100)} % CI": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(table["low"], table["high"],
                                                                                   strict=True)],
    })
    return markdown_table(rows)


def confusion_markdown(cm: np.ndarray) -> str:
    """Confusion matrix as Markdown, rows = true class, columns = predicted class."""
    frame = pd.DataFrame(cm.astype(int), columns=[f"pred {d}" for d in CLASS_DISPLAY])
    frame.insert(0, "true", list(CLASS_DISPLAY))
    return markdown_table(frame)


def breakdown_markdown(table: pd.DataFrame, metrics: Sequence[str]) -> str:
    """A :func:`pepx.evaluation.breakdown.breakdown` frame as Markdown, metrics as ``value [low, high]``."""
    counts = ["n_images", "n_patients", *(f"n_{c}" for c in CLASSES)]
    frame = table[["group", *counts]].copy()
    frame.columns = ["group", "images", "patients", *(f"n {d}" for d in CLASS_DISPLAY)]
    for name in metrics:
        triples = zip(table[name], table[f"{name}_low"], table[f"{name}_high"], strict=True)
        frame[class_label(name)] = [fmt_ci(v, lo, hi) for v, lo, hi in triples]
    return markdown_table(frame)


def _jsonable(obj: object) -> object:
    """Plain JSON types from dicts, lists, DataFrames, numpy values and paths; NaN becomes None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return _jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj: object, path: str | Path) -> Path:
    """Write ``obj`` (dicts, lists, DataFrames, numpy values) as indented JSON; NaN becomes null."""
    path = Path(path)
    return write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")
