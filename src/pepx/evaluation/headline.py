"""The few lines `pepx evaluate` prints: accuracy, macro-F1 and recall per class with their CIs, and the
adults-only accuracy, read from an evaluation's `metrics.json` (what `evaluate_predictions` wrote)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pepx import CLASS_DISPLAY, CLASSES
from pepx.evaluation.report import fmt_ci


def _ci(rows: list[dict[str, Any]], name: str) -> str:
    row = next((r for r in rows if r["metric"] == name), None)
    if row is None or row["value"] is None:
        return "-"
    return fmt_ci(row["value"], row["low"], row["high"])


def headline_lines(summary: dict[str, Any]) -> list[str]:
    """The headline of an evaluation summary in its JSON form (`metrics.json`)."""
    level = int(round(summary["bootstrap"]["level"] * 100))
    rows = summary["metrics"]
    lines = [f"{summary['n_images']} images of {summary['n_patients']} patients; {level} % CIs (bootstrap "
             f"of patients, {summary['bootstrap']['n_boot']} resamples)",
             f"accuracy  {_ci(rows, 'accuracy')}",
             f"macro-F1  {_ci(rows, 'macro_f1')}",
             "recall    " + "   ".join(f"{d} {_ci(rows, f'recall_{c}')}"
                                      for c, d in zip(CLASSES, CLASS_DISPLAY, strict=True))]
    adults = summary.get("adults") or {}
    if adults.get("note"):
        lines.append(f"adults    {adults['note']}")
    elif adults:
        lines.append(f"adults    accuracy {_ci(adults['metrics'], 'accuracy')} on {adults['n_images']} adult "
                     "images (children set aside: no child-vs-adult shortcut)")
    return lines


def read_headline(eval_dir: str | Path) -> list[str]:
    """`headline_lines` of the `metrics.json` in ``eval_dir``."""
    return headline_lines(json.loads((Path(eval_dir) / "metrics.json").read_text()))
