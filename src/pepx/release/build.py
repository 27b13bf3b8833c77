"""Make a bundle from a training run (`pepx export RUN --out BUNDLE`).

1. the run's weights, rounded as the bundle stores them (fp16 for the large tensors);
2. logits of the validation split (or of `calibrate=SOURCE`) and of the test split, through the `Predictor`'s
   own reading and preprocessing, so every number below is what the bundle gives;
3. the temperature (`pepx.evaluation.calibration`) and, per class asked for, the operating point whose
   validation sensitivity reaches its target (`pepx.evaluation.roc`);
4. the test evaluation of the calibrated bundle (`evaluate_predictions`: metrics, AUROC, per source and age,
   with patient-bootstrap CIs), calibration before/after, the operating points' test sensitivity and
   specificity, and a handful of reference predictions;
5. config.json and the model card; the evaluation files go to `report_dir` (default `RUN/bundle_report`);
6. the input gate (`pepx.serving.gate`): fitted on the run's train / val films, measured on its test films
   (report in `report_dir/gate`); a run too small for one gets none, and says so.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pepx import CLASSES
from pepx.data import confound_report, leak_check, load_source, read_image
from pepx.errors import ConfigError, RunError
from pepx.evaluation.calibration import calibration_table, fit_temperature, probabilities
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.plots import plot_reliability_pair
from pepx.evaluation.roc import sens_spec, threshold_for_sensitivity
from pepx.release.card import caveats_from_adults, model_card
from pepx.release.gate import fit_and_report
from pepx.release.runs import RunInfo, read_run
from pepx.release.settings import ExportSettings
from pepx.serving.bundle import Bundle, bundle_config, check_bundle_out, round_like_bundle, write_bundle
from pepx.serving.gate.card import with_gate_card
from pepx.serving.predictor import Predictor
from pepx.training.evaluate import check_report_folder


@dataclass(frozen=True)
class BuildResult:
    bundle: Bundle
    report_dir: Path
    summary: dict[str, Any]

    @property
    def text(self) -> str:
        """A few lines for the terminal: temperature, test accuracy and AUROC, operating points, files."""
        s = self.summary
        m = s["bundle"]["test_metrics"]
        lines = [f"calibration: T = {s['calibration']['temperature']:.3f} ({s['calibration']['fitted_on']})",
                 f"test: accuracy {_ci(m['accuracy'])}, macro AUROC {_ci(m['auroc_macro'])} "
                 f"({s['evaluation']['n_images']} images)"]
        for cls, p in s["operating_points"].items():
            t = p["test"]
            lines.append(f"operating point {cls}: p >= {p['threshold']:.3f} (validation sensitivity "
                         f"{p['val_sensitivity']:.3f}); test sensitivity {t['sensitivity']:.3f}, specificity "
                         f"{t['specificity']:.3f}")
        gate = self.bundle.gate
        lines.append(f"input gate: {s.get('gate', 'off')}" + (
            f" (rejected at score >= {gate.reject:.3f}, unfamiliar at distance >= {gate.unfamiliar:.3f})"
            if gate else ""))
        lines.append(f"model card: {self.bundle.path / 'README.md'}; evaluation: {self.report_dir}")
        return "\n".join(lines)


def _ci(v: list[float | None]) -> str:
    return "-" if v[0] is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def parse_targets(items: list[str] | None) -> dict[str, float] | None:
    """`["COVID-19=0.95", ...]` -> `{"COVID-19": 0.95}`; None -> None (the default targets)."""
    if items is None:
        return None
    out = {}
    for item in items:
        cls, sep, value = item.partition("=")
        try:
            out[cls] = float(value)
        except ValueError:
            sep = ""
        if not sep or not 0 < out.get(cls, 0) <= 1:
            raise ConfigError(f"--target {item!r}: expected CLASS=SENSITIVITY with 0 < SENSITIVITY <= 1")
    return out


def predictor_from_run(run_dir: str | Path, runtime: str = "torch", device: str | None = None) -> Predictor:
    """A `Predictor` straight from a run folder: its weights as trained (fp32), no calibration (T = 1)."""
    run = read_run(run_dir)
    cfg = run.config
    config = bundle_config(cfg.model, cfg.model_kwargs, image_size=cfg.image_size, in_chans=cfg.in_chans,
                           preprocess=cfg.preprocess_settings(), bundle_id=f"run {run.path.name}",
                           version="uncalibrated")
    with tempfile.TemporaryDirectory() as tmp:
        return Predictor(write_bundle(run.model, tmp, config, half=False), runtime=runtime, device=device)


def logits_for(predictor: Predictor, paths: list[str], batch_size: int = 64) -> np.ndarray:
    """Logits [N, C] of image files, read and preprocessed exactly as `Predictor.predict` does."""
    out = [np.zeros((0, len(predictor.classes)), dtype=np.float32)]
    for start in range(0, len(paths), batch_size):
        x = torch.stack([predictor.preprocess(read_image(p)) for p in paths[start : start + batch_size]])
        out.append(predictor.predict_logits(x))
    return np.concatenate(out)


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return np.array([CLASSES.index(v) for v in frame["label"]], dtype=np.int64)


def predictions_frame(frame: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """`predictions.csv` rows (pepx.training's columns) of `frame` with probabilities `probs`."""
    out = pd.DataFrame({c: frame[c].to_numpy() if c in frame else pd.NA
                        for c in ("path", "label", "patient_id", "source", "age_group", "view", "split")})
    out["y_true"], out["y_pred"] = _labels(frame), probs.argmax(1)
    for k, c in enumerate(CLASSES):
        out[f"prob_{c}"] = probs[:, k]
    return out


def _calibration_rows(run: RunInfo, calibrate: str | None) -> tuple[pd.DataFrame, str]:
    if calibrate is None:
        val = run.rows("val")
        return val, f"the run's validation split ({len(val)} images)"
    frame = load_source(calibrate).manifest
    trained = run.rows("train").assign(split="train")
    report = leak_check(pd.concat([trained, frame.assign(split="val")], ignore_index=True))
    if not report.ok:
        raise ConfigError(f"--calibrate {calibrate}: {report.n_patient_overlap()} patients are also in the "
                          "run's training split; calibrate on images the run never saw")
    return frame.reset_index(drop=True), f"{calibrate} ({len(frame)} images)"


def _shortcut(test: pd.DataFrame, train: pd.DataFrame) -> dict[str, float] | None:
    """Adult pneumonia films of the test split and what the bundle calls them; the age mix of training."""
    if "age_group" not in test or "age_group" not in train:
        return None
    adult = test[(test["age_group"] == "adult") & (test["y_true"] == CLASSES.index("pneumonia"))]

    def share(label: str, age: str) -> float:
        rows = train[train["label"] == label]
        return float((rows["age_group"] == age).mean()) if len(rows) else float("nan")

    return {"n": len(adult), "as_covid": int((adult["y_pred"] == CLASSES.index("COVID-19")).sum()),
            "correct": int((adult["y_pred"] == CLASSES.index("pneumonia")).sum()),
            "train_covid_adult": share("COVID-19", "adult"),
            "train_pneumonia_child": share("pneumonia", "pediatric")}


def _checks(test: pd.DataFrame, data: str, per_class: int) -> list[dict[str, Any]]:
    """`per_class` test images of each class, evenly spaced in path order (so several sources show up), with
    their probabilities; paths relative to the data source's folder when it is `csv:FILE` or `folder:DIR`."""
    fmt, _, where = data.partition(":")
    root = {"csv": Path(where).resolve().parent, "folder": Path(where).resolve()}.get(fmt)
    picks = []
    for _, group in test.sort_values("path").groupby("y_true", sort=True):
        picks.append(group.iloc[np.unique(np.linspace(0, len(group) - 1, per_class).round().astype(int))])
    rows = pd.concat(picks)
    out = []
    for r in rows.to_dict(orient="records"):
        path = Path(r["path"]).resolve()
        rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else path
        out.append({"path": str(rel), "label": r["label"],
                    "probabilities": [round(float(r[f"prob_{c}"]), 6) for c in CLASSES]})
    return out


def bundle_from_run(run_dir: str | Path, out: str | Path,
                    settings: ExportSettings | None = None) -> BuildResult:
    """Make the bundle `out` from the run folder `run_dir` (steps in the module docstring) as `settings` say
    (`ExportSettings`: id, version, calibration data, operating points, bootstrap, gate, history, ...)."""
    st = settings or ExportSettings()
    half, n_boot = st.half, st.n_boot
    run = read_run(run_dir)
    cfg = run.config
    base = bundle_config(cfg.model, cfg.model_kwargs, image_size=cfg.image_size, in_chans=cfg.in_chans,
                         preprocess=cfg.preprocess_settings(),
                         bundle_id=st.bundle_id or f"{cfg.model}-{cfg.loss}-{run.path.name}",
                         version=st.version)
    out = check_bundle_out(out, base["id"], st.force)
    report = check_report_folder(st.report_dir if st.report_dir is not None else run.path / "bundle_report",
                                 "--report")
    model = round_like_bundle(run.model, half)
    with tempfile.TemporaryDirectory() as tmp:  # the uncalibrated bundle gives the logits
        predictor = Predictor(write_bundle(model, tmp, base, half=half), device="cpu")
    cal_rows, cal_what = _calibration_rows(run, st.calibrate)
    test = run.rows("test")
    if test.empty:
        raise RunError(f"{run.path}: no test rows in split.csv, so there is nothing to put in the model card")
    test_logits = logits_for(predictor, list(test["path"]))
    y_test = _labels(test)
    temperature, cal_table, points = 1.0, None, {}
    if len(cal_rows):
        cal_logits, y_cal = logits_for(predictor, list(cal_rows["path"])), _labels(cal_rows)
        temperature = fit_temperature(cal_logits, y_cal)
        cal_table = calibration_table(test_logits, y_test, test["patient_id"], temperature, n_boot=n_boot)
        cal_probs = probabilities(cal_logits, temperature)
        for cls, target in st.operating_targets.items():
            k = CLASSES.index(cls)
            t = threshold_for_sensitivity(cal_probs[:, k], y_cal == k, target)
            points[cls] = {"threshold": t, "target_sensitivity": target, "chosen_on": cal_what,
                           "val_sensitivity": float((cal_probs[y_cal == k, k] >= t).mean())}
    else:
        cal_what = "no validation rows and no --calibrate data"
    report.mkdir(parents=True, exist_ok=True)
    preds = predictions_frame(test, probabilities(test_logits, temperature).astype(np.float32))
    uncal = predictions_frame(test, probabilities(test_logits, 1.0).astype(np.float32))
    evaluation = evaluate_predictions(preds, report, title=f"Bundle {base['id']} on the test split of "
                                      f"{run.path.name}", n_boot=n_boot)
    if cal_table is not None:
        plot_reliability_pair(uncal, preds, report / "calibration.png",
                              titles=("before (T = 1)", f"after (T = {temperature:.2f})"))
    for cls, p in points.items():
        p["test"] = {k: _number(v) for k, v in sens_spec(preds, cls, p["threshold"], n_boot=n_boot).items()}
    checks = _checks(preds, cfg.data, st.n_checks)
    split = run.split if run.split is not None else test
    counts = pd.crosstab(split["split"], split["label"]).reindex(columns=list(CLASSES), fill_value=0)
    calibration = {**base["calibration"], "temperature": temperature, "fitted_on": cal_what}
    if cal_table is not None:  # ECE / NLL on the test split before and after, [value, low, high]
        calibration["test"] = _table_dict(cal_table)
    config = {**base, "calibration": calibration,
              "operating_points": {c: {k: v for k, v in p.items() if k != "test"} | {"test": p["test"]}
                                   for c, p in points.items()},
              "training": {"run": run.path.name, "data": cfg.data, "model": cfg.model, "loss": cfg.loss,
                           "epochs": cfg.epochs, "image_size": cfg.image_size, "augment": cfg.augment,
                           "seed": cfg.seed,
                           "split_counts": {s: {c: int(n) for c, n in counts.loc[s].items()}
                                            for s in counts.index},
                           "command": st.command},
              "test_metrics": _table_dict(pd.concat([evaluation["metrics"], evaluation["auroc"]])),
              "checks": {"data": cfg.data, "images": checks},
              "caveats": caveats_from_adults(evaluation["adults"])}
    if st.history:
        config["history"] = st.history
    bundle = write_bundle(model, out, config, half=half)
    gate_note = "off (--no-gate)"
    if st.gate:
        try:
            bundle = fit_and_report(bundle, split, st.gate_ood, report / "gate", n_boot)
            gate_note = "on"
        except ConfigError as err:  # a run too small for a gate still gets its bundle
            gate_note = f"not fitted ({err})"
            print(f"gate: {gate_note}")
    summary = {"bundle": bundle.config, "bundle_dir": out.name, "run": run.path.name, "command": st.command,
               "train_config": cfg.to_dict(), "split_counts": counts.reset_index(),
               "leak": _leak_text(split), "confound_warnings": _warnings(split),
               "evaluation": evaluation, "calibration": {"temperature": temperature, "fitted_on": cal_what,
                                                         "table": cal_table},
               "operating_points": points, "shortcut": _shortcut(preds, run.rows("train")), "checks": checks,
               "gate": gate_note, "history": st.history}
    bundle = bundle.with_changes(card=model_card(summary) + _gate_card(bundle))
    return BuildResult(bundle.save(out), report, summary)


def read_history(path: str | Path) -> list[dict[str, str]]:
    """`--history FILE.json`: a list of objects whose values are short texts (`ConfigError` otherwise)."""
    try:
        history = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--history {path}: cannot read it as JSON ({err})") from None
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and h and all(isinstance(v, str) for v in h.values()) for h in history):
        raise ConfigError(f"--history {path}: expected a list of objects of texts, e.g. "
                          '[{"version": "1.0.0", "test": "accuracy 0.88"}]')
    return history


def _gate_card(bundle: Bundle) -> str:
    section = bundle.config.get("gate")
    return "\n" + with_gate_card("", section).lstrip("\n") if section else ""


def _number(v: float) -> float | int | None:
    """A number for config.json: ints as they are, floats to 6 decimals, NaN (undefined) as None (null)."""
    if isinstance(v, (int, np.integer)):
        return int(v)
    return None if v is None or np.isnan(v) else round(float(v), 6)


def _table_dict(table: pd.DataFrame) -> dict[str, list[float | None]]:
    """A `metric, value, low, high` frame as `{metric: [value, low, high]}`."""
    return {m: [_number(v) for v in (val, lo, hi)] for m, val, lo, hi in table.itertuples(index=False)}


def _warnings(split: pd.DataFrame) -> list[str]:
    """The confound warnings over the whole split, plus split-specific ones not already among them."""
    every = confound_report(split).warnings
    overall = [w for w in every if not w.startswith("[")]
    return overall + [w for w in every if w.startswith("[") and w.split("] ", 1)[-1] not in overall]


def _leak_text(split: pd.DataFrame) -> str:
    report = leak_check(split)
    return (f"{report.n_patient_overlap()} patients in two splits, {report.n_pixel_duplicates()} identical "
            "images" if report.hash_column else f"{report.n_patient_overlap()} patients in two splits")


__all__ = ["BuildResult", "bundle_from_run", "logits_for", "parse_targets",
           "predictions_frame", "predictor_from_run", "read_history"]
