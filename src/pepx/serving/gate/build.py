"""Fit a bundle's input gate from data (`pepx export` does it for a run; `pepx gate fit` for any bundle).

Every image goes through the bundle's own reading and preprocessing (`Predictor.preprocess`) and
network, so a bundle trained with other preprocessing (histogram equalisation, another size) gets a gate
that sees what its network sees. Training films: the `train` rows (weighed by source when the split has a
`source` column), plus `framed` variants of some of them (still frontal films); thresholds: the `val` rows;
negatives: synthetic corruptions of training films (`TRAIN_KINDS`, one each, cycling through the kinds) and,
with `ood`, the development part of an out-of-distribution set (`pepx.serving.gate.ood`: its test part is
never read here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pepx import __version__
from pepx.data.io import read_image
from pepx.errors import ConfigError
from pepx.serving.bundle import Bundle, gate_file
from pepx.serving.gate.features import FeatureTap, stage_names
from pepx.serving.gate.fit import C_DEFAULT, REJECT_RATE, UNFAMILIAR_RATE, fit_gate, thresholds
from pepx.serving.gate.ood import read_ood
from pepx.serving.gate.section import GATE_KEY, GATE_VERSION
from pepx.serving.gate.synthetic import TRAIN_KINDS, corrupt, framed
from pepx.serving.predictor import Predictor

Features = dict[str, np.ndarray]
SCORE_TEXT = ("P(not a frontal chest X-ray): logistic regression on every stage's spatially pooled features "
              "and their log Mahalanobis distances; rejected at or above thresholds.reject")
DISTANCE_TEXT = ("mean over stages of the standardised log Mahalanobis distance to the nearest class mean "
                 "(tied covariance, Ledoit-Wolf; 0 = a typical training film); unfamiliar at or above "
                 "thresholds.unfamiliar")


class FeatureReader:
    """Pooled stage features of images through a bundle's preprocessing and network (CPU, batches)."""

    def __init__(self, bundle: Bundle, batch_size: int = 64) -> None:
        self.predictor = Predictor(bundle, device="cpu", gate=False)
        self.layers = stage_names(self.predictor._model)
        self.batch_size = batch_size

    def __call__(self, images: Iterable[np.ndarray]) -> Features:
        """Features {layer: [N, C]} of float [H, W] images in [0, 1]."""
        tap = FeatureTap(self.predictor._model, self.layers)
        out: dict[str, list[np.ndarray]] = {name: [] for name in self.layers}
        try:
            for batch in _batches(images, self.batch_size):
                _, feats = tap(torch.stack([self.predictor.preprocess(im) for im in batch]))
                for name in self.layers:
                    out[name].append(feats[name].numpy())
        finally:
            tap.remove()
        return {k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in out.items()}


def _batches(items: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _train_images(paths: list[str], n_synthetic: int, seed: int, synthetic: list[np.ndarray],
                  n_framed: int = 0, variants: list[tuple[int, np.ndarray]] | None = None
                  ) -> Iterator[np.ndarray]:
    """Each training film once; the first `n_synthetic` of a seeded order also yield a corruption into
    `synthetic` (kinds in turn), and `n_framed` films of another seeded order (its film's index, a `framed`
    variant) into `variants`, so every file is read once."""
    rng = np.random.default_rng(seed)
    chosen = {int(i): k for k, i in enumerate(rng.permutation(len(paths))[:n_synthetic])}
    frame_rng = np.random.default_rng([seed, 1])
    to_frame = set(frame_rng.permutation(len(paths))[:n_framed].tolist())
    kinds = list(TRAIN_KINDS)
    for i, path in enumerate(paths):
        image = read_image(path)
        if i in chosen:
            synthetic.append(corrupt(image, kinds[chosen[i] % len(kinds)], rng, TRAIN_KINDS))
        if i in to_frame and variants is not None:
            variants.append((i, framed(image, frame_rng)))
        yield image


def fit_bundle_gate(bundle: Bundle, split: pd.DataFrame, ood: str | Path | None = None,
                    n_synthetic: int | None = None, n_framed: int | None = None, seed: int = 0,
                    C: float = C_DEFAULT,
                    reject_rate: float = REJECT_RATE, unfamiliar_rate: float = UNFAMILIAR_RATE,
                    say: Callable[[str], Any] = lambda _: None) -> Bundle:
    """`bundle` (in memory) with a gate fitted on `split`'s train rows and thresholded on its val rows; `save`
    writes it. `n_synthetic`: corrupted training films (default: as many as there are training films, up to
    1,500); `n_framed`: `framed` variants of training films joining the films (default: as many as there are
    training films, up to 1,000); `ood`: an out-of-distribution set's metadata.csv or folder, whose `dev` part
    joins the negatives. `say` receives progress lines."""
    train, val = (split[split["split"] == s].reset_index(drop=True) for s in ("train", "val"))
    if train.empty or val.empty:
        raise ConfigError("the gate needs a split with train rows (to fit on) and val rows (for its "
                          f"thresholds): this one has {len(train)} train and {len(val)} val rows")
    classes = list(bundle.classes)
    unknown = sorted(set(train["label"]) - set(classes))
    if unknown:
        raise ConfigError(f"split labels {unknown} are not among the bundle's classes {classes}")
    reader = FeatureReader(bundle)
    n_syn = min(len(train), 1500) if n_synthetic is None else n_synthetic
    n_frm = min(len(train), 1000) if n_framed is None else n_framed
    say(f"gate: features of {len(train)} training films (+ {n_frm} framed, {n_syn} corrupted) and {len(val)} "
        f"validation films through {bundle.id}'s preprocessing and network")
    synthetic_images: list[np.ndarray] = []
    framed_films: list[tuple[int, np.ndarray]] = []
    train_feats = reader(_train_images(list(train["path"]), n_syn, seed, synthetic_images, n_frm,
                                       framed_films))
    synthetic = reader(synthetic_images)
    variant_of = np.array([i for i, _ in framed_films], dtype=int)
    variants = reader(image for _, image in framed_films) if framed_films else None
    val_feats = reader(read_image(p) for p in val["path"])
    real, ood_info = None, None
    if ood is not None:
        frame = read_ood(ood)
        dev = frame[frame["part"] == "dev"]
        real = reader(read_image(p) for p in dev["path"])
        ood_info = {"set": str(ood), "part": "dev", "images": int(len(dev)),
                    "kinds": {k: int(n) for k, n in dev["kind"].value_counts().sort_index().items()}}
        say(f"gate: + {len(dev)} real images of other kinds from {ood} (its dev part)")
    y = np.array([classes.index(c) for c in train["label"]])
    sources = train["source"].astype(str).to_numpy() if "source" in train else None
    model = fit_gate(train_feats, y, train["patient_id"].astype(str).to_numpy(), synthetic, real,
                     reader.layers, len(classes), C=C, sources=sources, variants=variants,
                     variant_of=variant_of)
    limits = thresholds(model, val_feats, reject_rate, unfamiliar_rate)
    score, distance = model.scores(val_feats)
    section = {
        "version": GATE_VERSION, "layers": list(reader.layers),
        "thresholds": {k: round(v, 6) for k, v in limits.items()},
        "score": SCORE_TEXT, "distance": DISTANCE_TEXT,
        "fitted_on": {"train_films": int(len(train)), "val_films": int(len(val)),
                      "synthetic": {"images": n_syn, "kinds": list(TRAIN_KINDS), "seed": seed},
                      "framed": {"images": len(variant_of), "seed": seed},
                      "weights": "source-balanced" if sources is not None else "equal",
                      "real_ood": ood_info, "C": C, "reject_rate": reject_rate,
                      "unfamiliar_rate": unfamiliar_rate, "pepx": __version__},
        "validation": {"rejected": round(float((score >= limits["reject"]).mean()), 4),
                       "unfamiliar": round(float((distance >= limits["unfamiliar"]).mean()), 4)},
    }
    say(f"gate: thresholds reject >= {limits['reject']:.3f} (score), unfamiliar >= "
        f"{limits['unfamiliar']:.3f} (distance); on validation {section['validation']['rejected']:.1%} "
        f"rejected, {section['validation']['unfamiliar']:.1%} unfamiliar")
    tensors = model.to_tensors()
    section |= gate_file(tensors)[1]  # the in-memory bundle already loads as the saved one will
    return bundle.with_changes(config={GATE_KEY: section}, gate_tensors=tensors)


__all__ = ["FeatureReader", "fit_bundle_gate"]
