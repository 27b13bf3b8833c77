"""Metrics per data source, age group and view, with patient-bootstrap CIs.

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
from pepx.evaluation.report import breakdown_markdown

#: Manifest columns broken down by default.
GROUP_COLUMNS: tuple[str, ...] = ("source", "age_group", "view")
MISSING = "(missing)"
BREAKDOWN_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", *(f"recall_{c}" for c in CLASSES))


def group_columns(frame: pd.DataFrame, columns: Sequence[str] = GROUP_COLUMNS) -> list[str]:
    """The columns of ``columns`` that the frame has with at least one non-missing value."""
    return [c for c in columns if c in frame.columns and frame[c].notna().any()]


def missing_columns(frame: pd.DataFrame, columns: Sequence[str] = GROUP_COLUMNS) -> list[str]:
    """The columns of ``columns`` the frame lacks or holds no value of (e.g. ``view`` in predictions written
    before predictions recorded it)."""
    return [c for c in columns if c not in group_columns(frame, [c])]


def fill_columns(frame: pd.DataFrame, manifest: pd.DataFrame, columns: Sequence[str] = GROUP_COLUMNS
                 ) -> pd.DataFrame:
    """``frame`` with each of ``columns`` it lacks (or holds no value of) taken from ``manifest`` by ``path``
    (e.g. a run's `split.csv`); a row whose path is not in ``manifest`` gets NA there."""
    fill = [c for c in missing_columns(frame, columns) if c in manifest.columns]
    if not fill:
        return frame
    lookup = manifest.drop_duplicates("path").set_index("path")
    return frame.assign(**{c: frame["path"].map(lookup[c]) for c in fill})


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



def breakdown_sections(groups: dict[str, pd.DataFrame], heading: str = "##",
                       metrics: Sequence[str] = BREAKDOWN_METRICS,
                       columns: Sequence[str] = GROUP_COLUMNS) -> list[str]:
    """Report lines: a ``By <column>`` table for each of ``columns`` (``groups`` as :func:`breakdowns`
    returns), or one sentence where the images do not record it (e.g. ``view`` in older predictions)."""
    lines: list[str] = []
    for col in columns:
        body = (breakdown_markdown(pd.DataFrame(groups[col]), metrics) if col in groups
                else f"Not recorded for these images: no breakdown by {col}.")
        lines += [f"{heading} By {col}", "", body, ""]
    return lines
