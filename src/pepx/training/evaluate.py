"""`evaluate_run` (`pepx evaluate`): load a trained run, predict the chosen rows, and write the evaluation
(`pepx.evaluation.evaluate_predictions`) with a note saying which weights were scored and the run's state."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pepx.data import DataError, leak_check, load_source, load_split
from pepx.errors import RunError
from pepx.evaluation.bootstrap import N_BOOT, check_bootstrap
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.training.config import TrainConfig
from pepx.training.layout import RunLayout
from pepx.training.run import build_model, load_weights, predict

log = logging.getLogger("pepx.training")


def _frame_for(layout: RunLayout, data: str | None, split: str | None) -> tuple[pd.DataFrame, str]:
    """The manifest rows to evaluate and a sentence saying which they are; an error when there are none."""
    if split is not None:
        frame = load_split(split)
        what = f"all rows of split {split}"
        if "split" in frame.columns and (frame["split"] == "test").any():
            frame = frame[frame["split"] == "test"].reset_index(drop=True)
            what = f"test rows of split {split}"
        if frame.empty:
            raise DataError(f"{split}: the split has no rows to evaluate")
        return frame, what
    if data is not None:
        manifest = load_source(data).manifest
        if manifest.empty:
            raise DataError(f"{data}: no usable images to evaluate (`pepx data inspect {data}` lists why)")
        return manifest, f"every image of {data}"
    own = load_split(layout.split)
    frame = own[own["split"] == "test"].reset_index(drop=True)
    if frame.empty:
        raise RunError(f"{layout.split}: the run's split has no test rows (trained with n_test=0?); evaluate "
                       "it on other images with --data SOURCE or --split CSV")
    return frame, "the run's own test split"


def _leak_note(layout: RunLayout, frame: pd.DataFrame) -> list[str]:
    """Patients or images the run trained on that are also in the evaluated rows (pepx.data.leak_check)."""
    if not layout.split.exists():
        return []
    trained = load_split(layout.split)
    trained = trained[trained["split"] != "test"]
    evaluated = frame.drop(columns=["split"], errors="ignore").assign(split="test")
    report = leak_check(pd.concat([trained, evaluated], ignore_index=True))
    return [] if report.ok else ["LEAK: the evaluated images overlap the run's training data.\n\n"
                                 + report.to_markdown()]


def check_report_folder(out: str | Path, option: str = "--out") -> Path:
    """`out` as a Path when a report may be written into it: not a file, not a run folder, not a model
    bundle (their own files - predictions.csv, config.json - would be overwritten); else `RunError`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a folder (the report folder)")
    if RunLayout(out).config.is_file():
        raise RunError(f"{option} {out}: is the run folder of a `pepx train` run (its predictions.csv would "
                       "be overwritten); write the report elsewhere")
    if (out / "config.json").is_file():
        raise RunError(f"{option} {out}: holds a model bundle (config.json); write the report elsewhere")
    return out


def evaluate_run(run_dir: str | Path, data: str | None = None, split: str | None = None,
                 out: str | Path | None = None, n_boot: int = N_BOOT, seed: int = 0,
                 epoch: int | None = None) -> Path:
    """Predict with a trained run, write its evaluation into ``out`` (default ``RUN/eval``), return ``out``.

    Rows: ``split`` given -> its test rows (all rows if it has none); else ``data`` given -> every image of
    that source (an external test); else the run's own test split. Weights: ``epoch`` -> that epoch's; else
    the final weights of a complete run, or the newest epoch's of an incomplete one, with a warning (logged
    to ``pepx.training`` and written at the top of the report). Errors come before any file is written.
    """
    check_bootstrap(n_boot)
    layout = RunLayout(run_dir).require()
    config = TrainConfig.from_file(layout.config)
    weights, note = layout.resolve_weights(epoch)
    frame, what = _frame_for(layout, data, split)
    model = load_weights(build_model(config), weights).eval()
    out = check_report_folder(out if out is not None else layout.eval_dir)
    preds = predict(model, frame, config)
    state = layout.state()
    notes = [f"Run `{layout.root}` ({config.model}, {config.loss} loss; {state.describe()}), weights "
             f"`{weights.relative_to(layout.root)}`, on {what}."]
    if note:  # an incomplete run's newest epoch (a warning), or the epoch asked for (a note)
        kind = "Note" if state.complete or epoch is not None else "Warning"
        log.warning("%s: %s", kind.upper(), note)
        notes.append(f"**{kind}:** {note}")
    notes += _leak_note(layout, frame)
    evaluate_predictions(preds, out, title=f"Evaluation of {layout.root.name}", n_boot=n_boot, seed=seed,
                         notes=notes)
    return out


__all__ = ["check_report_folder", "evaluate_run"]
