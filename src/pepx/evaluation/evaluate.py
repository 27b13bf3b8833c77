"""`pepx evaluate`: a run's predictions, metrics with patient-bootstrap CIs, breakdowns, plots, reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASSES
from pepx.evaluation.bootstrap import LEVEL, N_BOOT, bootstrap_metrics
from pepx.evaluation.breakdown import BREAKDOWN_METRICS, breakdowns
from pepx.evaluation.metrics import PROB_COLUMNS, confusion_matrix
from pepx.evaluation.plots import plot_confusion, plot_reliability, plot_roc
from pepx.evaluation.report import (
    breakdown_markdown,
    confusion_markdown,
    fmt_ci,
    metrics_markdown,
    write_json,
)
from pepx.evaluation.roc import auroc_table, roc_curves


def evaluate_predictions(frame: pd.DataFrame, out: str | Path, *, title: str = "Evaluation",
                         n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                         notes: list[str] | None = None) -> dict:
    """Write predictions.csv, metrics.json, report.md, confusion_matrix.png, reliability.png and roc.png
    into ``out``.

    ``frame`` is a predictions frame (`predictions.csv` columns). Returns what ``metrics.json`` holds.
    """
    from pepx.data import confound_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "predictions.csv", index=False)
    notes = list(notes or [])
    unknown = frame["y_true"] < 0
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
        "notes": notes,
    }
    write_json(summary, out / "metrics.json")
    (out / "report.md").write_text(evaluation_markdown(summary, level=level))
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
                  "A source or age group in this test set holds a single class, so a network can be right "
                  "for the wrong reason (recognising the hospital, scanner or age, not the disease). Read "
                  "the overall numbers together with the per-group ones below.", ""]
        lines += [f"- {w}" for w in summary["warnings"]] + [""]
    lines += [f"{heading}# Metrics", "", metrics_markdown(table, level=level), "",
              f"{heading}# Confusion matrix", "",
              confusion_markdown(np.asarray(summary["confusion_matrix"])), "",
              "![confusion matrix](confusion_matrix.png)", ""]
    if "ece" in set(table["metric"]):
        lines += ["![reliability diagram](reliability.png)", ""]
    if summary.get("auroc") is not None:
        lines += [f"{heading}# ROC and AUROC", "",
                  "Each class against the other two, on its own probability; macro = mean of the three.", "",
                  metrics_markdown(summary["auroc"], level=level), "", "![ROC curves](roc.png)", ""]
    for col, groups in summary["breakdowns"].items():
        lines += [f"{heading}# By {col}", "", breakdown_markdown(groups, BREAKDOWN_METRICS), ""]
    return "\n".join(lines)


def _frame_for(run_dir: Path, data: str | None, split: str | None) -> tuple[pd.DataFrame, str]:
    """The manifest rows to evaluate and a sentence saying which they are."""
    from pepx.data import load_source, load_split

    if split is not None:
        frame = load_split(split)
        if "split" in frame.columns and (frame["split"] == "test").any():
            return frame[frame["split"] == "test"].reset_index(drop=True), f"test rows of split {split}"
        return frame, f"all rows of split {split}"
    if data is not None:
        return load_source(data).manifest, f"every image of {data}"
    frame = load_split(run_dir / "split.csv")
    return frame[frame["split"] == "test"].reset_index(drop=True), "the run's own test split"


def _leak_note(run_dir: Path, frame: pd.DataFrame) -> list[str]:
    """Patients or images the run trained on that are also in the evaluated rows (pepx.data.leak_check)."""
    from pepx.data import leak_check, load_split

    split_file = run_dir / "split.csv"
    if not split_file.exists():
        return []
    trained = load_split(split_file)
    trained = trained[trained["split"] != "test"]
    evaluated = frame.drop(columns=["split"], errors="ignore").assign(split="test")
    report = leak_check(pd.concat([trained, evaluated], ignore_index=True))
    return [] if report.ok else ["LEAK: the evaluated images overlap the run's training data.\n\n"
                                 + report.to_markdown()]


def evaluate_run(run_dir: str | Path, data: str | None = None, split: str | None = None,
                 out: str | Path | None = None, n_boot: int = N_BOOT, seed: int = 0) -> Path:
    """Predict with a trained run, write its evaluation into ``out`` (default ``RUN/eval``), return ``out``.

    Rows: ``split`` given -> its test rows (all rows if it has none); else ``data`` given -> every image of
    that source (an external test); else the run's own test split.
    """
    from pepx.training import load_run, predict

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "eval"
    model, config = load_run(run_dir)
    frame, what = _frame_for(run_dir, data, split)
    preds = predict(model, frame, config)
    notes = [f"Run `{run_dir}` ({config.model}, {config.loss} loss) on {what}."] + _leak_note(run_dir, frame)
    evaluate_predictions(preds, out, title=f"Evaluation of {run_dir.name}", n_boot=n_boot, seed=seed,
                         notes=notes)
    return out
