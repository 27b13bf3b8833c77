"""Metrics per data source and per age group, with patient-bootstrap CIs, and shortcut warnings.

A group that holds a single class (e.g. a source that only supplies COVID-19, or children who only appear
with pneumonia) lets a network score by recognising the group instead of the disease;
:func:`shortcut_warnings` says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pepx import CLASSES
from pepx.evaluation.bootstrap import LEVEL, N_BOOT, metric_samples, percentile_interval

#: Manifest columns broken down by default.
GROUP_COLUMNS: tuple[str, ...] = ("source", "age_group")
MISSING = "(missing)"
BREAKDOWN_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", *(f"recall_{c}" for c in CLASSES))


def group_columns(frame: pd.DataFrame, columns: Sequence[str] = GROUP_COLUMNS) -> list[str]:
    """The columns of ``columns`` that the frame has with at least one non-missing value."""
    return [c for c in columns if c in frame.columns and frame[c].notna().any()]


def breakdown(frame: pd.DataFrame, by: str, n_boot: int = N_BOOT, seed: int = 0,
              level: float = LEVEL) -> pd.DataFrame:
    """One row per value of ``by``: sizes, class counts and each metric of ``BREAKDOWN_METRICS`` with its CI.

    Recall of a class absent from the group, and macro-F1 of a single-class group, are NaN (undefined there).
    """
    keys = frame[by].astype("object").where(frame[by].notna(), MISSING)
    rows = []
    for group, sub in frame.groupby(keys, sort=True):
        present = set(sub["y_true"].astype(int))
        row: dict[str, object] = {"by": by, "group": group, "n_images": len(sub),
                                  "n_patients": sub["patient_id"].nunique()}
        for k, c in enumerate(CLASSES):
            row[f"n_{c}"] = int((sub["y_true"] == k).sum())
        point, boot = metric_samples(sub, n_boot=n_boot, seed=seed)
        for name in BREAKDOWN_METRICS:
            undefined = (name == "macro_f1" and len(present) < 2) or (
                name.startswith("recall_") and CLASSES.index(name[len("recall_"):]) not in present)
            low, high = (np.nan, np.nan) if undefined else percentile_interval(boot[name], level)
            row[name] = np.nan if undefined else point[name]
            row[f"{name}_low"], row[f"{name}_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)


def breakdowns(frame: pd.DataFrame, columns: Sequence[str] = GROUP_COLUMNS, n_boot: int = N_BOOT,
               seed: int = 0, level: float = LEVEL) -> dict[str, pd.DataFrame]:
    """:func:`breakdown` for each of ``columns`` present in the frame."""
    return {c: breakdown(frame, c, n_boot=n_boot, seed=seed, level=level)
            for c in group_columns(frame, columns)}


def shortcut_warnings(frame: pd.DataFrame, columns: Sequence[str] = GROUP_COLUMNS) -> list[str]:
    """Sentences naming every group that holds one class only, and every class that such groups hold entirely.

    ``frame`` needs ``y_true`` (or ``label``) and the group columns; missing group values are ignored.
    """
    labels = (frame["y_true"].map(lambda k: CLASSES[int(k)]) if "y_true" in frame.columns else frame["label"])
    out = []
    for col in group_columns(frame, columns):
        known = frame[col].notna()
        table = pd.crosstab(frame.loc[known, col], labels[known])
        pure = table[(table > 0).sum(axis=1) == 1]
        for group, counts in pure.iterrows():
            cls = counts.idxmax()
            out.append(f"`{col}` = {group}: all {int(counts.max())} images are {cls}, so `{col}` alone "
                       f"predicts the class for this group.")
        for cls in table.columns:
            holders = table.index[table[cls] > 0]
            if len(holders) and all(g in pure.index for g in holders):
                out.append(f"Class {cls} is identified by `{col}` alone: every {cls} image comes from "
                           f"{', '.join(map(str, holders))}, where no other class occurs; a score on {cls} "
                           f"may measure {col}, not disease.")
    return out
