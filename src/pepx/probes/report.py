"""`pepx audit`'s output folder: Markdown report, CSV tables, JSON, the invariance figure, a stdout summary.

The folder is refused when it holds files the audit did not write (no ``audit.json`` of an earlier audit);
an earlier audit's folder is rewritten file by file, leaving anything else in it alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from pepx import CLASS_DISPLAY, CLASSES
from pepx.errors import ConfigError
from pepx.evaluation.plots import save
from pepx.markdown import fmt, markdown_table
from pepx.probes.results import ProbeResult

MARKER = "audit.json"
FILES = (MARKER, "report.md", "probes.csv", "probe_predictions.csv", "blanked.csv", "invariance.csv",
         "invariance.png", "model_predictions.csv", "comparison.csv", "comparison.png")
METRIC_NAMES = {"accuracy": "accuracy",
                **{f"recall_{c}": f"{d} recall" for c, d in zip(CLASSES, CLASS_DISPLAY, strict=True)}}


def check_out(out: Path) -> Path:
    """``out``, after checking it is new, empty, or an earlier audit's folder (`ConfigError` otherwise)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ConfigError(f"--out {out}: holds files `pepx audit` did not write; choose a new or empty "
                          "folder")
    return out


def ci(d: dict[str, float], digits: int = 3) -> str:
    return f"{fmt(d['value'], digits)} [{fmt(d['low'], digits)}, {fmt(d['high'], digits)}]"


def probe_table(results: list[ProbeResult]) -> str:
    rows = [{"probe": r.probe, "setting": r.setting, "classes": len(r.classes), "films": r.n_images,
             "balanced accuracy [95 % CI]": ci(r.scores["balanced_accuracy"]),
             "chance": r.chance["balanced_accuracy"],
             "label alone": ci(r.baseline["balanced_accuracy"]), "AUROC [95 % CI]": ci(r.scores["auroc"]),
             "label alone AUROC": ci(r.baseline["auroc"])} for r in results]
    return markdown_table(pd.DataFrame(rows))


def within_table(results: list[ProbeResult]) -> str:
    """Each probe's scores within each disease class (where the disease label cannot help)."""
    rows = [{"probe": r.probe, "setting": r.setting, "disease class": disease, "films": w["n_images"],
             "probed classes": " ".join(w["classes"]),
             "balanced accuracy [95 % CI]": ci(w["balanced_accuracy"]), "chance": 1 / len(w["classes"]),
             "AUROC [95 % CI]": ci(w["auroc"])}
            for r in results for disease, w in r.within.items()]
    return markdown_table(pd.DataFrame(rows)) if rows else "(no disease class holds two probed classes)"


def recall_table(results: list[ProbeResult]) -> str:
    """Recall of each probed class (rows) under each probe setting (columns)."""
    frame = pd.DataFrame({f"{r.probe} ({r.setting})": r.recall for r in results})
    return markdown_table(frame.rename_axis("class"), index=True)


def changes_markdown(table: pd.DataFrame) -> str:
    rows = [{"condition": r.condition, "metric": METRIC_NAMES.get(r.metric, r.metric),
             "untouched [95 % CI]": ci({"value": r.reference, "low": r.reference_low,
                                         "high": r.reference_high}),
             "changed [95 % CI]": ci({"value": r.value, "low": r.low, "high": r.high}),
             "difference [95 % CI]": ci({"value": r.diff, "low": r.diff_low, "high": r.diff_high}),
             "CI excludes 0": bool(r.diff_low > 0 or r.diff_high < 0)} for r in table.itertuples()]
    return markdown_table(pd.DataFrame(rows))


def plot_invariance(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Accuracy and per-class recall, untouched and after each change, with 95 % CIs."""
    metrics = list(METRIC_NAMES)
    conditions = ["untouched", *dict.fromkeys(table["condition"])]
    fig = Figure(figsize=(8.5, 3.8))
    ax = fig.add_subplot()
    width = 0.8 / len(conditions)
    for j, cond in enumerate(conditions):
        if cond == "untouched":
            part = table[table["condition"] == table["condition"].iloc[0]].set_index("metric").loc[metrics]
            v, lo, hi = part["reference"], part["reference_low"], part["reference_high"]
        else:
            part = table[table["condition"] == cond].set_index("metric").loc[metrics]
            v, lo, hi = part["value"], part["low"], part["high"]
        xs = [i + (j - (len(conditions) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, v, width, label=cond, yerr=[(v - lo).clip(lower=0), (hi - v).clip(lower=0)], capsize=2)
    ax.set_xticks(range(len(metrics)), [METRIC_NAMES[m] for m in metrics])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("on the same test films")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncols=len(conditions), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    return save(fig, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(json.dumps(_jsonable(payload), indent=1, default=str))
    return path
