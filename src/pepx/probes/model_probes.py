"""The probes that need a trained disease model, on the films it is tested on (pooled over CV folds):

- ``features``: a linear probe (standardised logistic regression, patient-grouped K-fold within each model's
  test films) predicting the source from the model's penultimate features
  ``model.forward_head(model.forward_features(x), pre_logits=True)``;
- ``blanked``: accuracy with the lungs blanked (`pepx.probes.images.blank_lungs`) against the untouched films
  and chance (1/3): far above chance means the model reads the film outside the lungs;
- ``invariance``: accuracy and per-class recall after histogram equalisation, JPEG re-compression and a
  down/up resize against the untouched films, each with its paired difference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from pepx import CLASSES
from pepx.data import DataError, Preprocess
from pepx.probes.data_probes import source_column
from pepx.probes.images import blank_lungs, changed_films, changes, films, inputs
from pepx.probes.learners import linear_oof
from pepx.probes.results import ProbeResult, probed_rows, score
from pepx.probes.settings import ProbeSettings
from pepx.probes.stats import paired_changes
from pepx.training.run import load_run

log = logging.getLogger("pepx.probes")
UNTOUCHED, BLANKED = "untouched", "lungs blanked"


@dataclass(frozen=True)
class ModelView:
    """How a disease model reads a film: its input side, its preprocessing and its image cache."""

    size: int
    preprocess: Preprocess
    cache_dir: str | None = None


@dataclass
class Scores:
    """A model's predicted class per condition for each test film (``frame``: one row per film with
    ``pred_<condition>`` columns and the run's name) and its penultimate features per run."""

    frame: pd.DataFrame
    features: dict[str, np.ndarray]


@torch.no_grad()
def _forward(model: nn.Module, x: torch.Tensor, batch: int) -> tuple[np.ndarray, np.ndarray]:
    preds, feats = [], []
    for i in range(0, len(x), batch):
        fmap = model.forward_features(x[i:i + batch])
        feats.append(model.forward_head(fmap, pre_logits=True))
        preds.append(model.forward_head(fmap).argmax(dim=1))
    return torch.cat(preds).numpy(), torch.cat(feats).numpy()


def score_model(model: nn.Module, view: ModelView, test: pd.DataFrame, settings: ProbeSettings,
                conditions: list[str], name: str = "model") -> Scores:
    """Predict ``test`` untouched and under each of ``conditions`` (``lungs blanked`` and/or the names of
    `pepx.probes.images.changes`)."""
    model.eval()
    stack = films(test, view.size, view.preprocess, view.cache_dir)
    base = inputs(stack, view.preprocess)
    frame = test[["path", "patient_id", "source", "label"]].reset_index(drop=True).assign(run=name)
    frame["y_true"] = [CLASSES.index(v) for v in frame["label"]]
    frame[f"pred_{UNTOUCHED}"], features = _forward(model, base, settings.batch)
    made = changes(settings.jpeg_quality, settings.resize)
    for cond in conditions:
        x = (blank_lungs(base, settings.lung_box) if cond == BLANKED
             else inputs(changed_films(test, view.size, view.preprocess, made[cond]), view.preprocess))
        frame[f"pred_{cond}"] = _forward(model, x, settings.batch)[0]
    return Scores(frame, {name: features})


def score_runs(runs: list, settings: ProbeSettings, conditions: list[str]) -> Scores:
    """`score_model` for every `pepx.probes.target.ScoredRun`, pooled."""
    frames, features = [], {}
    for run in runs:
        model, config = load_run(run.folder)
        view = ModelView(config.image_size, config.preprocess_settings(), config.cache_dir)
        log.info("scoring %s on %d test films (%s)", run.name, len(run.test),
                 ", ".join([UNTOUCHED, *conditions]))
        scores = score_model(model, view, run.test, settings, conditions, name=run.name)
        frames.append(scores.frame)
        features.update(scores.features)
    return Scores(pd.concat(frames, ignore_index=True), features)


def features_probe(scores: Scores, settings: ProbeSettings, setting: str) -> ProbeResult:
    """Source from each model's penultimate features on its own test films (probe trained within them)."""
    what = "features probe"
    frame = scores.frame.assign(source=source_column(scores.frame, what))
    parts, probs, notes = [], [], []
    for name, feats in scores.features.items():
        own = frame[frame["run"] == name].assign(position=lambda f: np.arange(len(f)))
        try:
            rows, dropped = probed_rows(own, own["source"], f"{what} on {name}", settings.folds)
        except DataError as err:  # this model's test films hold one usable source: leave the model out
            notes.append(f"{name}: left out ({err})")
            continue
        notes += [f"{name}: {d}" for d in dropped]
        local = sorted(rows["probe_target"].unique())
        y = rows["probe_target"].map({c: i for i, c in enumerate(local)}).to_numpy()
        prob = linear_oof(feats[rows["position"].to_numpy()], y, rows["patient_id"].astype(str).to_numpy(),
                          len(local), settings.folds, settings.seed)
        parts.append(rows)
        probs.append(pd.DataFrame(prob, columns=local))
    if not parts:
        raise DataError(f"{what}: no model's test films hold two sources with >= {settings.folds} patients")
    rows = pd.concat(parts, ignore_index=True)
    classes = sorted(rows["probe_target"].unique())
    prob = pd.concat(probs, ignore_index=True).reindex(columns=classes).fillna(0.0).to_numpy()
    return score("features", setting, rows, classes, prob, settings, notes)


def changes_table(scores: Scores, conditions: list[str], settings: ProbeSettings) -> pd.DataFrame:
    """`pepx.probes.stats.paired_changes` of ``conditions`` against the untouched films."""
    frame = scores.frame
    preds = {c: frame[f"pred_{c}"].to_numpy() for c in [UNTOUCHED, *conditions]}
    return paired_changes(frame["y_true"].to_numpy(), preds, frame["patient_id"].astype(str).to_numpy(),
                          reference=UNTOUCHED, n_boot=settings.n_boot, seed=settings.seed)
