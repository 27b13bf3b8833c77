"""Synthetic predictions frames and run folders (metrics, split, a finished layout) for the evaluation,
experiments and registry tests: no training."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASSES
from pepx.evaluation.metrics import PROB_COLUMNS
from pepx.experiments.grid import GridRun, plan, run_dir
from pepx.training.layout import RunLayout


def fake_predictions(n_per_class: int = 100, accuracy: float = 0.8, seed: int = 0,
                     images_per_patient: int = 1, confidence: float | None = None) -> pd.DataFrame:
    """A predictions frame: balanced classes, each image right with probability ``accuracy``.

    ``confidence=None`` gives calibrated probabilities (top-class probability = chance of being right);
    otherwise the predicted class gets ``confidence``.
    """
    rng = np.random.default_rng(seed)
    n_patients = 3 * n_per_class
    y_patient = np.repeat(np.arange(3), n_per_class)
    y_true = np.repeat(y_patient, images_per_patient)
    n = len(y_true)
    right = rng.random(n) < accuracy
    wrong = (y_true + rng.integers(1, 3, n)) % 3
    y_pred = np.where(right, y_true, wrong)
    top = np.full(n, accuracy if confidence is None else confidence)
    probs = np.tile(((1 - top) / 2)[:, None], (1, 3))
    probs[np.arange(n), y_pred] = top
    frame = pd.DataFrame({
        "path": [f"/img/{i}.png" for i in range(n)],
        "label": [CLASSES[k] for k in y_true],
        "patient_id": np.repeat([f"p{i}" for i in range(n_patients)], images_per_patient),
        "source": np.where(y_true == 2, "hospital_c",
                           np.where(rng.random(n) < 0.5, "hospital_a", "hospital_b")),
        "age_group": np.where(y_true == 1, "pediatric", "adult"),
        "split": "test", "y_true": y_true, "y_pred": y_pred,
    })
    frame[list(PROB_COLUMNS)] = probs
    return frame


def fake_metrics_csv(path: Path, epochs: int = 4, seed: int = 0, level: float = 0.8,
                     residuals: bool = True) -> Path:
    """A `metrics.csv` with the documented columns, accuracy rising towards ``level``."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(1, epochs + 1):  # 1-based, as pepx.training writes it
        acc = level * (1 - 0.5**e) + rng.normal(0, 0.01)
        row = {"epoch": e, "train_loss": 1.0 / (e + 1), "train_acc": acc, "lr": 1e-3, "epoch_seconds": 1.0,
               "images_per_second": 100.0}
        row.update({"test_loss": 1.0 / (e + 1), "test_acc": acc, "test_macro_f1": acc})
        for c in CLASSES:
            row.update({f"test_precision_{c}": acc, f"test_recall_{c}": acc,
                        f"test_f1_{c}": acc + rng.normal(0, 0.01)})
        if residuals:
            for layer in ("layer1.0", "layer2.0"):
                row.update({f"{layer}.A": 1 + 0.1 * e, f"{layer}.B": 0.5 - 0.05 * e, f"{layer}.C": 0.2 * e})
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def mark_complete(run_dir: Path, epochs: int) -> Path:
    """Make ``run_dir`` a complete run for `RunLayout.state` (config, per-epoch and final weight files; the
    weight files are empty: reports read only metrics and predictions)."""
    layout = RunLayout(run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(f"epochs: {epochs}\n")
    for epoch in range(1, epochs + 1):
        layout.epoch_weights(epoch).parent.mkdir(parents=True, exist_ok=True)
        layout.epoch_weights(epoch).touch()
    layout.final_weights.touch()
    return run_dir


def fake_run(run_dir: Path, accuracy: float, seed: int, epochs: int = 4, residuals: bool = True,
             n_per_class: int = 30) -> Path:
    """A completed run folder with `split.csv`, `metrics.csv` and `predictions.csv` (same test images for
    every run). The predictions have no `view` column (as runs trained before predictions recorded it); the
    split has one."""
    layout = RunLayout(run_dir)
    fake_metrics_csv(layout.metrics, epochs=epochs, seed=seed, level=accuracy, residuals=residuals)
    preds = fake_predictions(n_per_class, accuracy=accuracy, seed=seed)
    preds.to_csv(layout.predictions, index=False)
    fake_split(n_per_class).to_csv(layout.split, index=False)
    return mark_complete(run_dir, epochs)


def fake_views(labels: pd.Series) -> np.ndarray:
    """A view that goes with the class, as in cxr-real v2: normal PA, COVID-19 AP, pneumonia alternating."""
    alternate = np.where(np.arange(len(labels)) % 2 == 0, "AP", "PA")
    return np.where(labels == "normal", "PA", np.where(labels == "COVID-19", "AP", alternate))


def fake_split(n_per_class: int = 30) -> pd.DataFrame:
    """A split frame whose test rows are the images of :func:`fake_predictions` (plus a few train rows), with
    a `view` column (:func:`fake_views`)."""
    test = fake_predictions(n_per_class)[["path", "label", "patient_id", "source", "age_group", "split"]]
    test = test.assign(view=fake_views(test["label"]))
    train = test.assign(path=test["path"].str.replace("/img/", "/train/"),
                        patient_id="t" + test["patient_id"], split="train")
    frame = pd.concat([train, test], ignore_index=True)
    frame["pixel_sha1"] = frame["path"]  # unique per image: no pixel duplicates, nothing to decode
    return frame


def fake_grid(out: Path, profile, accuracy: Mapping[str, float],
              seed: Callable[[GridRun], int] = lambda run: run.seed) -> Path:
    """A finished `pepx reproduce` folder without training: `split.csv` and a `fake_run` for every run of
    `profile`'s grid, right with probability `accuracy[model]`, seeded by `seed(run)`; PEPX-ResNet's
    metrics have residual-like early epochs."""
    out.mkdir(parents=True)
    fake_split(30).to_csv(out / "split.csv", index=False)
    for run in plan(profile.models, profile.losses, range(profile.seeds)):
        fake_run(run_dir(out, run), accuracy[run.model], seed=seed(run), epochs=profile.epochs,
                 residuals=run.model == "pepx_resnet")
    return out
