"""Per-class ROC curves, AUROC with patient-bootstrap CIs, and operating points (torchmetrics functional).

Each class is scored one-vs-rest on its own probability column. AUROC is the chest X-ray papers' standard
metric; its interval resamples *patients* within each class, as every other interval of pepx does
(`pepx.evaluation.bootstrap`). An operating point is a per-class probability threshold chosen on one split
(e.g. the highest COVID-19 threshold whose validation sensitivity reaches 0.95) and then reported with its
sensitivity and specificity, with CIs, on another (the test split).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import multiclass_auroc, multiclass_roc

from pepx import CLASSES
from pepx.evaluation.bootstrap import LEVEL, N_BOOT, patient_resamples, percentile_interval
from pepx.evaluation.metrics import NUM_CLASSES, PROB_COLUMNS, single_thread


def _arrays(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.tensor(frame[list(PROB_COLUMNS)].to_numpy(dtype=np.float32))
    return probs, torch.tensor(frame["y_true"].to_numpy(dtype=np.int64))


@single_thread()
def roc_curves(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One-vs-rest ROC curve of each class: ``{class: DataFrame(fpr, tpr, threshold)}``."""
    probs, y = _arrays(frame)
    fpr, tpr, thr = multiclass_roc(probs, y, num_classes=NUM_CLASSES)
    return {c: pd.DataFrame({"fpr": f.numpy(), "tpr": t.numpy(), "threshold": h.numpy()})
            for c, f, t, h in zip(CLASSES, fpr, tpr, thr, strict=True)}


@single_thread()
def auroc_samples(frame: pd.DataFrame, index: torch.Tensor | None = None) -> np.ndarray:
    """AUROC per class for each row of ``index`` (``[B, L]``, ``-1`` padding; None = all rows): ``[B, C]``.
    A class absent from a row, or the only class in it, gives NaN there."""
    probs, y = _arrays(frame)
    rows = [torch.arange(len(y))] if index is None else [r[r >= 0] for r in torch.as_tensor(index)]
    out = np.full((len(rows), NUM_CLASSES), np.nan)
    for i, r in enumerate(rows):
        present = torch.bincount(y[r], minlength=NUM_CLASSES)
        values = multiclass_auroc(probs[r], y[r], num_classes=NUM_CLASSES, average=None, validate_args=False)
        ok = (present > 0) & (present < len(r))
        out[i, ok.numpy()] = values.double().numpy()[ok.numpy()]
    return out


def auroc_table(frame: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0,
                level: float = LEVEL) -> pd.DataFrame:
    """``metric, value, low, high`` rows: ``auroc_<class>`` for each class and ``auroc_macro`` (their mean),
    with percentile intervals from ``n_boot`` patient resamples within class (the same resamples as
    `bootstrap_metrics` for the same ``seed``)."""
    point = auroc_samples(frame)[0]
    boot = auroc_samples(frame, patient_resamples(frame["patient_id"], frame["y_true"], n_boot, seed))
    rows = []
    for k, c in enumerate(CLASSES):
        rows.append((f"auroc_{c}", point[k], *percentile_interval(boot[:, k], level)))
    macro = np.nanmean(boot, axis=1) if not np.isnan(boot).all() else boot[:, 0]
    rows.append(("auroc_macro", float(np.nanmean(point)) if not np.isnan(point).all() else np.nan,
                 *percentile_interval(macro, level)))
    return pd.DataFrame(rows, columns=["metric", "value", "low", "high"])


# ---------------------------------------------------------------------- operating points
def threshold_for_sensitivity(scores: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The highest threshold t with sensitivity P(score >= t | positive) >= ``target``."""
    pos = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(positive, dtype=bool)])
    if len(pos) == 0:
        raise ValueError("no positive examples to choose a threshold on")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must lie in (0, 1], got {target}")
    # keep at least ceil(target * n) positives at or above t: t = the k-th largest positive score
    k = int(np.ceil(target * len(pos) - 1e-9))
    return float(pos[len(pos) - k])


def sens_spec(frame: pd.DataFrame, cls: str, threshold: float, n_boot: int = N_BOOT, seed: int = 0,
              level: float = LEVEL) -> dict[str, float]:
    """Sensitivity and specificity of "prob_<cls> >= threshold" on ``frame``, with patient-bootstrap CIs."""
    k = CLASSES.index(cls)
    flag = frame[f"prob_{cls}"].to_numpy(dtype=np.float64) >= threshold
    pos = frame["y_true"].to_numpy() == k
    index = patient_resamples(frame["patient_id"], frame["y_true"], n_boot, seed).numpy()
    valid = index >= 0
    safe = np.where(valid, index, 0)
    tp = ((flag & pos)[safe] & valid).sum(1)
    tn = ((~flag & ~pos)[safe] & valid).sum(1)
    n_pos, n_neg = (pos[safe] & valid).sum(1), (~pos[safe] & valid).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens_b, spec_b = tp / n_pos, tn / n_neg
    out = {"threshold": float(threshold), "n_positive": int(pos.sum()), "n_negative": int((~pos).sum()),
           "sensitivity": float((flag & pos).sum() / max(pos.sum(), 1)),
           "specificity": float((~flag & ~pos).sum() / max((~pos).sum(), 1))}
    out["sensitivity_low"], out["sensitivity_high"] = percentile_interval(sens_b, level)
    out["specificity_low"], out["specificity_high"] = percentile_interval(spec_b, level)
    return out


__all__ = ["auroc_samples", "auroc_table", "roc_curves", "sens_spec", "threshold_for_sensitivity"]
