"""Metrics per data source and per age group, with patient-bootstrap CIs.

A group that holds a single class (e.g. a source that only supplies COVID-19, or children who only appear
with pneumonia) lets a network score by recognising the group instead of the disease; the numbers per group
show what is left once the group is fixed (`pepx.data.confound_report` names such groups).
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
        point, boot = metric_samples(sub, n_boot=n_boot, seed=seed, with_ece=False)
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

