"""Temperature scaling (Guo et al., ICML 2017) and what it changes, with patient-bootstrap CIs.

One scalar T > 0 divides the logits: ``p = softmax(z / T)``. T is fitted on validation logits by minimising
the negative log-likelihood (scipy's bounded scalar search over log T); it changes no argmax, so accuracy,
F1 and AUROC stay as they were, and only the confidence moves. ECE (15 equal-width bins, torchmetrics) and NLL
are then compared before and after on *another* split, each with its interval, and the paired difference
with its own interval (the same patient resamples on both sides).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torchmetrics.functional.classification import multiclass_calibration_error

from pepx.evaluation.bootstrap import LEVEL, N_BOOT, patient_resamples, percentile_interval
from pepx.evaluation.metrics import ECE_BINS, single_thread

#: Temperatures searched (log scale); outside this range the logits carry no usable ranking anyway.
T_BOUNDS = (0.05, 20.0)


def _nll_per_sample(logits: np.ndarray, y: np.ndarray, temperature: float) -> np.ndarray:
    z = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return F.cross_entropy(z, torch.as_tensor(y, dtype=torch.long), reduction="none").numpy()


@single_thread()
def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in ``T_BOUNDS`` that minimises the mean NLL of ``softmax(logits / T)`` against labels ``y``."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    if len(y) == 0:
        raise ValueError("no examples to fit a temperature on")
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    res = minimize_scalar(lambda log_t: float(_nll_per_sample(logits, y, np.exp(log_t)).mean()),
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)`` as float64."""
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float64) / temperature, dim=1).numpy()


def _ece(probs: torch.Tensor, y: torch.Tensor) -> float:
    return float(multiclass_calibration_error(probs, y, num_classes=probs.shape[1], n_bins=ECE_BINS,
                                              norm="l1", validate_args=False))


@single_thread()
def calibration_table(logits: np.ndarray, y: np.ndarray, patients, temperature: float, n_boot: int = N_BOOT,
                      seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """``metric, value, low, high`` rows: ``ece_before, ece_after, ece_change, nll_before, nll_after,
    nll_change`` (change = after - before) on the examples given (e.g. the test split)."""
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    before = torch.as_tensor(probabilities(logits, 1.0), dtype=torch.float32)
    after = torch.as_tensor(probabilities(logits, temperature), dtype=torch.float32)
    nll_b, nll_a = _nll_per_sample(logits, y, 1.0), _nll_per_sample(logits, y, temperature)
    index = patient_resamples(list(patients), list(np.asarray(y)), n_boot, seed)
    samples = {k: np.empty(n_boot) for k in ("ece_before", "ece_after", "nll_before", "nll_after")}
    for i, row in enumerate(index):
        r = row[row >= 0]
        samples["ece_before"][i], samples["ece_after"][i] = _ece(before[r], y_t[r]), _ece(after[r], y_t[r])
        samples["nll_before"][i], samples["nll_after"][i] = nll_b[r.numpy()].mean(), nll_a[r.numpy()].mean()
    point = {"ece_before": _ece(before, y_t), "ece_after": _ece(after, y_t),
             "nll_before": float(nll_b.mean()), "nll_after": float(nll_a.mean())}
    rows = []
    for m in ("ece", "nll"):
        for k in (f"{m}_before", f"{m}_after"):
            rows.append((k, point[k], *percentile_interval(samples[k], level)))
        diff = samples[f"{m}_after"] - samples[f"{m}_before"]
        change = point[f"{m}_after"] - point[f"{m}_before"]
        rows.append((f"{m}_change", change, *percentile_interval(diff, level)))
    return pd.DataFrame(rows, columns=["metric", "value", "low", "high"])


__all__ = ["T_BOUNDS", "calibration_table", "fit_temperature", "probabilities"]
