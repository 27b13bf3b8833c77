"""`evaluate_predictions`: a predictions frame into metrics with patient-bootstrap CIs, breakdowns, plots and
reports. Loading a run and predicting with it lives in `pepx.training.evaluate_run` (evaluation never imports
training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASSES
from pepx.data import DataError, confound_report
from pepx.evaluation.adults import adults_markdown, adults_summary
from pepx.evaluation.bootstrap import LEVEL, N_BOOT, bootstrap_metrics, check_bootstrap
from pepx.evaluation.breakdown import breakdown_sections, breakdowns
from pepx.evaluation.metrics import PROB_COLUMNS, confusion_matrix
from pepx.evaluation.plots import plot_confusion, plot_reliability, plot_roc
from pepx.evaluation.report import (
    confusion_markdown,
    fmt_ci,
    metrics_markdown,
    write_json,
)
from pepx.evaluation.roc import auroc_table, roc_curves
from pepx.fileio import write_csv, write_text


def evaluate_predictions(frame: pd.DataFrame, out: str | Path, *, title: str = "Evaluation",
                         n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                         notes: list[str] | None = None) -> dict:
    """Write predictions.csv, metrics.json, report.md, confusion_matrix.png, reliability.png and roc.png
    into ``out``.

    ``frame`` is a predictions frame (`predictions.csv` columns). Returns what ``metrics.json`` holds.
    Raises `ConfigError` for ``n_boot`` < 1 or a ``level`` outside (0, 1), and `DataError` when no row has a
    known label, before anything is written.
    """
    check_bootstrap(n_boot, level)
    unknown = frame["y_true"] < 0
    if unknown.all():
        raise DataError(f"nothing to score: {len(frame)} predictions, none with a label in {CLASSES}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(frame, out / "predictions.csv", index=False)
    notes = list(notes or [])
    if unknown.any():
        notes.append(f"{int(unknown.sum())} images with a label outside {CLASSES} are predicted (see "
                     "predictions.csv) but not scored.")
        frame = frame[~unknown].reset_index(drop=True)
    table = bootstrap_metrics(frame, n_boot=n_boot, seed=seed, level=level)
    cm = confusion_matrix(frame)
    groups = breakdowns(frame, n_boot=n_boot, seed=seed, level=level)
    warnings = confound_report(frame).warnings
    ece = float(table.set_index("metric").loc["ece", "value"]) if "ece" in set(table["metric"]) else None
    plot_confusion(cm, out / "confusion_matrix.png", title=title)
    if ece is not None:
        plot_reliability(frame, out / "reliability.png", ece=ece, title=title)
    auroc = None
    if all(c in frame.columns for c in PROB_COLUMNS):
        auroc = auroc_table(frame, n_boot=n_boot, seed=seed, level=level)
        labels = {m.removeprefix("auroc_"): fmt_ci(v, lo, hi)
                  for m, v, lo, hi in auroc.itertuples(index=False)}
        plot_roc(roc_curves(frame), out / "roc.png", aurocs=labels, title=f"{title}: ROC")
    summary = {
        "title": title, "n_images": len(frame), "n_patients": int(frame["patient_id"].nunique()),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": level, "unit": "patient, within class"},
        "metrics": table, "auroc": auroc, "confusion_matrix": cm, "breakdowns": groups, "warnings": warnings,
        "notes": notes, "adults": adults_summary(frame, n_boot=n_boot, seed=seed, level=level),
    }
    write_json(summary, out / "metrics.json")
    write_text(out / "report.md", evaluation_markdown(summary, level=level))
    return summary


def evaluation_markdown(summary: dict, level: float = LEVEL, heading: str = "#") -> str:
    """The Markdown report of :func:`evaluate_predictions`."""
    table: pd.DataFrame = summary["metrics"]
    acc = table.set_index("metric").loc["accuracy"]
    boot = summary["bootstrap"]
    lines = [
        f"{heading} {summary['title']}", "",
        f"{summary['n_images']} images of {summary['n_patients']} patients. Accuracy "
        f"{fmt_ci(acc['value'], acc['low'], acc['high'])}. Intervals: {int(level * 100)} % percentile "
        f"bootstrap, {boot['n_boot']} resamples of patients within each class (seed {boot['seed']}).", "",
    ]
    for note in summary.get("notes", []):
        lines += [f"> {note}", ""]
    if summary["warnings"]:
        lines += [f"{heading}# Shortcut warning", "",
                  "A source, age group or view in this test set holds a single class or goes with one, so "
                  "a network can be right for the wrong reason (recognising the hospital, scanner, view or "
                  "age, not the disease). Read the overall numbers together with the per-group ones "
                  "below.", ""]
        lines += [f"- {w}" for w in summary["warnings"]] + [""]
    lines += [f"{heading}# Metrics", "", metrics_markdown(table, level=level), ""]
    if "adults" in summary:
        lines += adults_markdown(summary["adults"], heading=f"{heading}#", level=level)
    lines += [f"{heading}# Confusion matrix", "",
              confusion_markdown(np.asarray(summary["confusion_matrix"])), "",
              "![confusion matrix](confusion_matrix.png)", ""]
    if "ece" in set(table["metric"]):
        lines += ["![reliability diagram](reliability.png)", ""]
    if summary.get("auroc") is not None:
        lines += [f"{heading}# ROC and AUROC", "",
                  "Each class against the other two, on its own probability; macro = mean of the three.", "",
                  metrics_markdown(summary["auroc"], level=level), "", "![ROC curves](roc.png)", ""]
    lines += breakdown_sections(summary["breakdowns"], heading=f"{heading}#")
    return "\n".join(lines)
