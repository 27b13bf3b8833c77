"""`ProbeResult`: one probe's score with its interval, its chance level and the label-alone baseline; and
`probed_rows`: the rows a probe can use (each probed class with enough patients for the folds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pepx import CLASSES
from pepx.data import DataError
from pepx.probes.learners import linear_oof
from pepx.probes.settings import ProbeSettings
from pepx.probes.stats import per_class_recall, probe_scores

METRICS = ("balanced_accuracy", "auroc")


@dataclass
class ProbeResult:
    """A probe that predicts ``classes`` (sources, or other/processed) from images or features.

    ``scores`` and ``baseline`` map `METRICS` to ``{value, low, high}``; ``baseline`` is the same probe fed
    only the film's true disease label (what the class alone tells about the source: sources hold different
    classes); ``recall`` is each probed class's recall; ``within`` scores the same predictions within each
    disease class that holds two probed classes (there the label cannot help): ``{disease: {metric: {value,
    low, high}, "classes": [...], "n_images": n}}``; ``predictions``: the out-of-fold probabilities per
    film."""

    probe: str
    setting: str
    classes: list[str]
    n_images: int
    n_patients: int
    scores: dict[str, dict[str, float]]
    baseline: dict[str, dict[str, float]]
    recall: dict[str, float]
    within: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def chance(self) -> dict[str, float]:
        return {"balanced_accuracy": 1.0 / len(self.classes), "auroc": 0.5}

    def rows(self) -> list[dict[str, object]]:
        """One CSV row per metric."""
        return [{"probe": self.probe, "setting": self.setting, "metric": m, **self.scores[m],
                 "chance": self.chance[m], "label_only": self.baseline[m]["value"],
                 "label_only_low": self.baseline[m]["low"], "label_only_high": self.baseline[m]["high"],
                 "n_images": self.n_images, "n_patients": self.n_patients, "classes": " ".join(self.classes)}
                for m in METRICS]

    def line(self) -> str:
        s, b = self.scores["balanced_accuracy"], self.baseline["balanced_accuracy"]
        a = self.scores["auroc"]
        return (f"{self.probe} probe ({self.setting}): balanced accuracy {s['value']:.3f} "
                f"[{s['low']:.3f}, {s['high']:.3f}] (chance {self.chance['balanced_accuracy']:.3f}, "
                f"label alone {b['value']:.3f}), AUROC {a['value']:.3f} [{a['low']:.3f}, {a['high']:.3f}]; "
                f"{len(self.classes)} classes, {self.n_images} films")


def probed_rows(frame: pd.DataFrame, target: pd.Series, what: str,
                folds: int) -> tuple[pd.DataFrame, list[str]]:
    """The rows of ``frame`` whose ``target`` value has at least ``folds`` patients (others dropped, with a
    note), with a ``probe_target`` column; `DataError` unless two values remain."""
    frame = frame.assign(probe_target=target.to_numpy()).dropna(subset=["probe_target"])
    patients = frame.groupby("probe_target")["patient_id"].nunique()
    few = sorted(patients.index[patients < folds].astype(str))
    notes = [f"left out (fewer than {folds} patients, the number of folds): " + ", ".join(
        f"{v} ({patients[v]})" for v in few)] if few else []
    kept = frame[~frame["probe_target"].astype(str).isin(few)].reset_index(drop=True)
    if kept["probe_target"].nunique() < 2:
        have = ", ".join(f"{v} ({n})" for v, n in patients.items()) or "none"
        raise DataError(f"{what}: needs at least 2 values with >= {folds} patients each to tell apart; "
                        f"the data has {have}")
    return kept, notes


def within_classes(y: np.ndarray, prob: np.ndarray, groups: np.ndarray, labels: np.ndarray,
                   classes: list[str], settings: ProbeSettings) -> dict[str, dict[str, Any]]:
    """`probe_scores` of the films of each disease class, over the probed classes present in it (argmax and
    AUROC among those)."""
    out: dict[str, dict[str, Any]] = {}
    for disease in CLASSES:
        rows = labels == disease
        present = sorted(set(y[rows]))
        if len(present) < 2:
            continue
        recode = {c: i for i, c in enumerate(present)}
        sub = prob[rows][:, present]
        sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
        scores = probe_scores([recode[v] for v in y[rows]], sub, groups[rows], settings.n_boot, settings.seed)
        out[disease] = {**scores, "classes": [classes[c] for c in present], "n_images": int(rows.sum())}
    return out


def score(probe: str, setting: str, rows: pd.DataFrame, classes: list[str], prob: np.ndarray,
          settings: ProbeSettings, notes: list[str]) -> ProbeResult:
    """A `ProbeResult` of out-of-fold ``prob`` for ``rows`` (``probe_target`` coded by ``classes``)."""
    y = rows["probe_target"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    groups = rows["patient_id"].astype(str).to_numpy()
    labels = rows["label"].astype(str).to_numpy()
    onehot = np.eye(len(CLASSES))[[CLASSES.index(v) for v in labels]]
    label_only = linear_oof(onehot, y, groups, len(classes), settings.folds, settings.seed)
    predictions = rows[["path", "patient_id", "label", "probe_target"]].assign(
        probe=probe, setting=setting, predicted=[classes[i] for i in prob.argmax(axis=1)],
        **{f"p_{c}": prob[:, i] for i, c in enumerate(classes)})
    return ProbeResult(probe, setting, classes, len(rows), int(rows["patient_id"].nunique()),
                       probe_scores(y, prob, groups, settings.n_boot, settings.seed),
                       probe_scores(y, label_only, groups, settings.n_boot, settings.seed),
                       per_class_recall(y, prob, classes),
                       within_classes(y, prob, groups, labels, classes, settings), predictions, notes)
