"""The adults-only 3-class table: adult normal / adult pneumonia / adult COVID-19.

The clinically relevant question. In the public sets children appear as normal or pneumonia but never as
COVID-19, so a network can score overall by telling a child from an adult; among adults that shortcut is gone
(others, such as the hospital or the view, may remain: the table is also given by view). Recall, precision and
accuracy with patient-bootstrap CIs (`pepx.evaluation.bootstrap`), counts per class and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pepx import CLASS_DISPLAY, CLASSES
from pepx.evaluation.bootstrap import LEVEL, N_BOOT, metric_samples, percentile_interval
from pepx.evaluation.breakdown import breakdown, group_columns
from pepx.evaluation.metrics import confusion_matrix
from pepx.evaluation.report import breakdown_markdown, confusion_markdown, fmt_ci
from pepx.markdown import markdown_table

ADULT = "adult"
#: The metrics of the adults-only table, in report order.
ADULT_METRICS: tuple[str, ...] = ("accuracy", *(f"recall_{c}" for c in CLASSES),
                                  *(f"precision_{c}" for c in CLASSES))
#: The by-view table of adults shows these (`pepx.evaluation.breakdown` metrics).
VIEW_METRICS: tuple[str, ...] = ("accuracy", *(f"recall_{c}" for c in CLASSES))


def no_adults(frame: pd.DataFrame) -> str | None:
    """The sentence a report prints instead of an empty adults-only table, or None when there are adults."""
    if "age_group" not in frame.columns or frame["age_group"].isna().all():
        return "No adults-only table: no age group is recorded for these images."
    if not (frame["age_group"] == ADULT).any():
        groups = ", ".join(sorted(frame["age_group"].dropna().astype(str).unique()))
        return (f"No adults-only table: none of these {len(frame)} images is from an adult (age groups: "
                f"{groups}).")
    return None


def adult_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` whose ``age_group`` is adult (empty without an ``age_group`` column)."""
    if "age_group" not in frame.columns:
        return frame.iloc[:0]
    return frame[frame["age_group"] == ADULT].reset_index(drop=True)


def adults_summary(frame: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """The adults-only table of a predictions frame (labelled rows only): ``note`` (a sentence, None when
    there are adults), ``n_images``, ``n_patients``, ``metrics`` (``metric, value, low, high`` for
    ``ADULT_METRICS``), ``per_class`` (counts, recall and precision per class), ``confusion_matrix`` and
    ``by_view`` (a `pepx.evaluation.breakdown.breakdown` frame of the adults by view; None where no view is
    recorded).

    Recall of a class with no adult image, and precision of a class never predicted, are NaN (undefined).
    """
    note = no_adults(frame)
    if note is not None:
        return {"note": note}
    adults = adult_rows(frame)
    point, boot = metric_samples(adults, n_boot=n_boot, seed=seed, with_ece=False)
    metrics = pd.DataFrame([(name, point[name], *percentile_interval(boot[name], level))
                            for name in ADULT_METRICS], columns=["metric", "value", "low", "high"])
    return {"note": None, "n_images": len(adults), "n_patients": int(adults["patient_id"].nunique()),
            "metrics": metrics, "per_class": _per_class(adults, metrics),
            "confusion_matrix": confusion_matrix(adults),
            "by_view": (breakdown(adults, "view", n_boot=n_boot, seed=seed, level=level)
                        if group_columns(adults, ["view"]) else None)}


def _per_class(adults: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per class: adult images, patients, images predicted as it, recall and precision with CIs."""
    by_metric = metrics.set_index("metric")
    rows = []
    for k, c in enumerate(CLASSES):
        rows.append({"class": c, "n_images": int((adults["y_true"] == k).sum()),
                     "n_patients": int(adults.loc[adults["y_true"] == k, "patient_id"].nunique()),
                     "n_predicted": int((adults["y_pred"] == k).sum()),
                     **{f"{kind}{suffix}": by_metric.loc[f"{kind}_{c}", col]
                        for kind in ("recall", "precision")
                        for suffix, col in (("", "value"), ("_low", "low"), ("_high", "high"))}})
    return pd.DataFrame(rows)


def adults_markdown(summary: dict, heading: str = "##", level: float = LEVEL, whose: str = "",
                    view_metrics: Sequence[str] = VIEW_METRICS) -> list[str]:
    """The adults-only section of a report (a sentence instead of the tables where there are no adults);
    ``whose`` names the model in the title."""
    title = f"{heading} Adults only: normal / pneumonia / COVID-19{f' ({whose})' if whose else ''}"
    if summary.get("note"):
        return [title, "", summary["note"], ""]
    acc = summary["metrics"].set_index("metric").loc["accuracy"]
    per_class = summary["per_class"]
    table = pd.DataFrame({
        "class": list(CLASS_DISPLAY), "adult images": per_class["n_images"],
        "patients": per_class["n_patients"], "predicted as": per_class["n_predicted"],
        **{f"{kind} [{int(level * 100)} % CI]": [fmt_ci(v, lo, hi) for v, lo, hi in
                                                  zip(per_class[kind], per_class[f"{kind}_low"],
                                                      per_class[f"{kind}_high"], strict=True)]
           for kind in ("recall", "precision")},
    })
    lines = [title, "",
             f"{summary['n_images']} adult images of {summary['n_patients']} patients (children set aside, "
             "so telling a child from an adult cannot raise these numbers). Accuracy "
             f"{fmt_ci(acc['value'], acc['low'], acc['high'])}.", "",
             markdown_table(table), "", confusion_markdown(np.asarray(summary["confusion_matrix"])), ""]
    if summary["by_view"] is None:
        return lines + ["No view is recorded for these images: no adults-by-view table.", ""]
    return lines + [f"{heading}# Adults by view", "",
                    breakdown_markdown(pd.DataFrame(summary["by_view"]), view_metrics), ""]
