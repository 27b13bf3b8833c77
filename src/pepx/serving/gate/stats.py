"""The gate's numbers with patient-bootstrap CIs: how well its score separates images of another kind from
frontal films (AUROC, FPR at 95 % TPR), and how often it rejects or doubts a group of films.

AUROC is scikit-learn's `roc_auc_score` (OOD = positive, higher score = more likely OOD). Resamples draw
frontal films by patient and OOD images by group (a corrupted film's patient, a cxr-ood case), each side
keeping its size (`pepx.evaluation.bootstrap.patient_resamples` with the side as stratum).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from pepx.evaluation.bootstrap import LEVEL, N_BOOT, patient_resamples, percentile_interval

TPR_TARGET = 0.95


def fpr_at_tpr(y: np.ndarray, score: np.ndarray, tpr: float = TPR_TARGET) -> float:
    """Share of frontal films (y = 0) scoring at or above the threshold that catches `tpr` of the OOD ones."""
    fpr, got, _ = roc_curve(y, score)
    return float(fpr[np.searchsorted(got, tpr, side="left")])


def _index(row: np.ndarray) -> np.ndarray:
    return row[row >= 0]


def separation(frontal: np.ndarray, other: np.ndarray, frontal_groups: Sequence, other_groups: Sequence,
               n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict[str, float]:
    """AUROC and FPR at 95 % TPR of `other` (positives) against `frontal` scores, each with its CI."""
    score = np.r_[frontal, other].astype(np.float64)
    y = np.r_[np.zeros(len(frontal)), np.ones(len(other))]
    groups = [f"f/{g}" for g in frontal_groups] + [f"o/{g}" for g in other_groups]
    index = patient_resamples(groups, y, n_boot=n_boot, seed=seed).numpy()
    auc, fpr = np.empty(n_boot), np.empty(n_boot)
    for b, row in enumerate(index):
        i = _index(row)
        auc[b], fpr[b] = roc_auc_score(y[i], score[i]), fpr_at_tpr(y[i], score[i])
    out = {"n_frontal": int(len(frontal)), "n_other": int(len(other)),
           "auroc": float(roc_auc_score(y, score)), "fpr95": fpr_at_tpr(y, score)}
    out["auroc_low"], out["auroc_high"] = percentile_interval(auc, level)
    out["fpr95_low"], out["fpr95_high"] = percentile_interval(fpr, level)
    return out


def rate(hit: np.ndarray, groups: Sequence, n_boot: int = N_BOOT, seed: int = 0,
         level: float = LEVEL) -> tuple[float, float, float]:
    """Share of `hit` (bool per image) and its CI, resampling `groups` (patients)."""
    hit = np.asarray(hit, dtype=np.float64)
    if len(hit) == 0:
        return float("nan"), float("nan"), float("nan")
    index = patient_resamples(list(groups), n_boot=n_boot, seed=seed).numpy()
    samples = np.array([hit[_index(row)].mean() for row in index])
    return (float(hit.mean()), *percentile_interval(samples, level))


__all__ = ["TPR_TARGET", "fpr_at_tpr", "rate", "separation"]
