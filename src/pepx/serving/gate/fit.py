"""Fitting the gate's arrays (`GateModel`) and thresholds from pooled stage features.

1. Per stage, the class means and one shared covariance of the training films' features (scikit-learn's
   `LedoitWolf` shrinkage estimate on the class-centred features; its inverse is the precision).
2. The classifier "not a frontal chest X-ray" (scikit-learn `LogisticRegression`, L2, `C`) on the pooled
   features of every stage and the log distances, standardised. Positives: the training films, their distances
   cross-fitted (each fold's distances from Gaussians fitted on the other folds, patients kept together), so
   they are as far from the means as unseen films would be; with them, when given, `framed` variants of
   training films (`pepx.serving.gate.synthetic.framed`: borders, tilt, another site's processing - still
   frontal films; they join their film's patient, class and source). Negatives: synthetic corruptions of
   training films (`pepx.serving.gate.synthetic.TRAIN_KINDS`) and, when given, real images of other kinds (a
   development part, e.g. cxr-ood's). Weights: films and negatives weigh the same in total; real and synthetic
   negatives too, when there are both; with `sources`, every source's films weigh the same in total, so a
   hospital with few films and a look of its own is not given up to the majority's look (issue 16: hannover,
   5.4 % of the training films, had 8.9 % of its test films rejected when films weighed the same).
3. Thresholds on the validation films: `reject` = the score that `reject_rate` of them reach, `unfamiliar` =
   the distance that `unfamiliar_rate` of them reach (defaults: 1 % and 5 %: 99 % and 95 % of frontal films
   pass).
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from pepx.errors import ConfigError
from pepx.serving.gate.model import GateModel

#: L2 regularisation of the classifier (inverse strength); folds of the cross-fitted distances.
C_DEFAULT, FOLDS = 0.1, 5
REJECT_RATE, UNFAMILIAR_RATE = 0.01, 0.05
#: Fewest validation films to set thresholds on.
MIN_VAL = 10

Features = dict[str, np.ndarray]


def gaussians(feats: Features, layers: tuple[str, ...], y: np.ndarray, n_classes: int
              ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Per stage: class means [K, C] and the precision [C, C] of the tied (pooled within-class) covariance."""
    means, precisions = [], []
    for name in layers:
        x = np.asarray(feats[name], dtype=np.float64)
        mu = np.stack([x[y == k].mean(axis=0) for k in range(n_classes)])
        precisions.append(LedoitWolf(assume_centered=True).fit(x - mu[y]).precision_.astype(np.float32))
        means.append(mu.astype(np.float32))
    return tuple(means), tuple(precisions)


def _subset(feats: Features, index: np.ndarray) -> Features:
    return {k: v[index] for k, v in feats.items()}


def _partial(layers: tuple[str, ...], means, precisions) -> GateModel:
    """A model holding only the Gaussians (to compute log distances)."""
    empty = np.zeros(0, dtype=np.float32)
    zeros = np.zeros(len(layers), dtype=np.float32)
    return GateModel(layers, means, precisions, zeros, zeros + 1, empty, empty, empty, 0.0)


def cross_fitted_log_distances(feats: Features, layers: tuple[str, ...], y: np.ndarray, groups: np.ndarray,
                               n_classes: int, folds: int = FOLDS) -> np.ndarray:
    """[N, L] log distances of the training films, each from Gaussians fitted without its fold."""
    out = np.zeros((len(y), len(layers)), dtype=np.float32)
    n_folds = min(folds, len(np.unique(groups)))
    if n_folds < 2:
        raise ConfigError("the gate needs training films of at least 2 patients")
    for fit_idx, held in GroupKFold(n_folds).split(y, groups=groups):
        if len(np.unique(y[fit_idx])) < n_classes:
            raise ConfigError("the gate needs training films of every class in every fold")
        model = _partial(layers, *gaussians(_subset(feats, fit_idx), layers, y[fit_idx], n_classes))
        out[held] = model.log_distances(_subset(feats, held))
    return out


def source_balanced(sources: np.ndarray | None, n: int) -> np.ndarray:
    """[n] weights, mean 1, under which every source's films weigh the same in total (all 1 without
    sources)."""
    if sources is None:
        return np.ones(n)
    _, inverse, counts = np.unique(np.asarray(sources).astype(str), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w / w.mean()


def _weights(pos: np.ndarray, n_synthetic: int, n_real: int) -> np.ndarray:
    """Films (relative weights `pos`) and negatives weigh the same in total; real and synthetic negatives too
    (mean weight 1)."""
    neg = n_synthetic + n_real
    if n_real and n_synthetic:
        w_neg = np.r_[np.full(n_synthetic, 0.5 / n_synthetic), np.full(n_real, 0.5 / n_real)]
    else:
        w_neg = np.full(neg, 1.0 / neg)
    w = np.r_[pos / pos.sum(), w_neg]
    return w * len(w) / w.sum()


def fit_gate(train: Features, y: np.ndarray, groups: np.ndarray, synthetic: Features,
             real: Features | None = None, layers: tuple[str, ...] = (), n_classes: int = 3,
             C: float = C_DEFAULT, folds: int = FOLDS, sources: np.ndarray | None = None,
             variants: Features | None = None, variant_of: np.ndarray | None = None) -> GateModel:
    """The gate's arrays (module docstring) from pooled features: `train` films with labels `y`, patient
    `groups` and optionally `sources`; `variants` of the films `variant_of` (indices into `train`) count as
    films; negatives `synthetic` and optionally `real`."""
    layers = tuple(layers) or tuple(train)
    if variants is not None and variant_of is not None and len(variant_of):
        of = np.asarray(variant_of, dtype=int)
        train = {k: np.concatenate([train[k], variants[k]]) for k in layers}
        y, groups = np.r_[y, y[of]], np.r_[groups, groups[of]]
        sources = None if sources is None else np.r_[np.asarray(sources), np.asarray(sources)[of]]
    if len(np.unique(y)) < n_classes:
        raise ConfigError(f"the gate needs training films of all {n_classes} classes")
    n_syn = len(next(iter(synthetic.values())))
    n_real = 0 if not real else len(next(iter(real.values())))
    if n_syn + n_real == 0:
        raise ConfigError("the gate needs negatives (synthetic corruptions or real images of other kinds)")
    means, precisions = gaussians(train, layers, y, n_classes)
    full = _partial(layers, means, precisions)
    log_train = cross_fitted_log_distances(train, layers, y, groups, n_classes, folds)
    center, scale = log_train.mean(axis=0), log_train.std(axis=0) + 1e-6
    negatives = [synthetic] + ([real] if n_real else [])
    x = np.concatenate([full.classifier_input(train, log_train)]
                       + [full.classifier_input(n, full.log_distances(n)) for n in negatives])
    target = np.r_[np.zeros(len(y)), np.ones(n_syn + n_real)]
    x_mean, x_scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    clf = LogisticRegression(C=C, max_iter=5000)
    weights = _weights(source_balanced(sources, len(y)), n_syn, n_real)
    clf.fit((x - x_mean) / x_scale, target, sample_weight=weights)
    return GateModel(layers, means, precisions, center.astype(np.float32), scale.astype(np.float32),
                     x_mean.astype(np.float32), x_scale.astype(np.float32),
                     clf.coef_[0].astype(np.float32), float(clf.intercept_[0]))


def thresholds(model: GateModel, val: Features, reject_rate: float = REJECT_RATE,
               unfamiliar_rate: float = UNFAMILIAR_RATE) -> dict[str, float]:
    """`reject` and `unfamiliar` thresholds that `reject_rate` and `unfamiliar_rate` of the validation films
    reach (the empirical upper quantiles, 'higher' interpolation: a film at the threshold is caught)."""
    for name, rate in (("reject_rate", reject_rate), ("unfamiliar_rate", unfamiliar_rate)):
        if not 0 < rate < 1:
            raise ConfigError(f"{name} must be between 0 and 1, got {rate}")
    score, distance = model.scores(val)
    if len(score) < MIN_VAL:
        raise ConfigError(f"the gate's thresholds need at least {MIN_VAL} validation films, got {len(score)}")
    return {"reject": float(np.quantile(score, 1 - reject_rate, method="higher")),
            "unfamiliar": max(0.0, float(np.quantile(distance, 1 - unfamiliar_rate, method="higher")))}


__all__ = ["C_DEFAULT", "REJECT_RATE", "UNFAMILIAR_RATE", "cross_fitted_log_distances", "fit_gate",
           "gaussians", "source_balanced", "thresholds"]
