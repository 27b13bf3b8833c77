"""The probes' numbers with patient-bootstrap intervals (`pepx.evaluation.bootstrap`'s resamples).

- `probe_scores`: balanced accuracy (mean recall over the probed classes, chance = 1/K) and AUROC (binary, or
  the macro mean of one-vs-rest AUROCs; chance = 0.5) of out-of-fold probe probabilities, patients resampled
  within each probed class.
- `paired_changes`: a disease model's accuracy and per-class recall on the same films before and after a
  change, and their paired difference; both conditions see the same patient resamples (within each true
  class), so the interval of the difference is that of the paired statistic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import multiclass_recall

from pepx import CLASSES
from pepx.evaluation.bootstrap import patient_resamples, percentile_interval
from pepx.evaluation.metrics import batched_metrics, single_thread


def interval(point: float, samples: np.ndarray) -> dict[str, float]:
    low, high = percentile_interval(np.asarray(samples, dtype=float))
    return {"value": float(point), "low": low, "high": high}


def _auroc(y: np.ndarray, prob: np.ndarray) -> float:
    if len(np.unique(y)) < prob.shape[1]:
        return float("nan")
    if prob.shape[1] == 2:
        return float(roc_auc_score(y, prob[:, 1]))
    return float(roc_auc_score(y, prob, multi_class="ovr", average="macro", labels=range(prob.shape[1])))


@single_thread()
def _balanced_accuracy(y: torch.Tensor, pred: torch.Tensor, index: torch.Tensor, k: int) -> np.ndarray:
    valid = index >= 0
    safe = index.clamp(min=0)
    target = torch.where(valid, y[safe], torch.full_like(safe, -1))
    return multiclass_recall(pred[safe], target, num_classes=k, average="macro",
                             multidim_average="samplewise", ignore_index=-1,
                             validate_args=False).double().numpy()


def probe_scores(y: Sequence[int], prob: np.ndarray, patients: Sequence, n_boot: int = 1000,
                 seed: int = 0) -> dict[str, dict[str, float]]:
    """``{"balanced_accuracy": {value, low, high}, "auroc": {...}}`` of probe probabilities ``prob``
    ``[N, K]`` for true classes ``y`` (0..K-1), resampling ``patients`` within each class."""
    scores = paired_probe_scores(y, [prob], patients, n_boot, seed)
    return {metric: interval(*values[0]) for metric, values in scores.items()}


def paired_probe_scores(y: Sequence[int], probs: Sequence[np.ndarray], patients: Sequence, n_boot: int = 1000,
                        seed: int = 0) -> dict[str, list[tuple[float, np.ndarray]]]:
    """``{metric: [(point, bootstrap samples) per probe]}`` for balanced accuracy and AUROC of several probes'
    probabilities for the same films, all on the same patient resamples (paired differences)."""
    y_np = np.array(y, dtype=np.int64)
    index = patient_resamples(list(patients), list(y_np), n_boot=n_boot, seed=seed)
    rows = [r[r >= 0].numpy() for r in index]
    out: dict[str, list[tuple[float, np.ndarray]]] = {"balanced_accuracy": [], "auroc": []}
    for prob in probs:
        prob = np.asarray(prob, dtype=np.float64)
        k, y_t, pred_t = prob.shape[1], torch.as_tensor(y_np), torch.as_tensor(prob.argmax(axis=1))
        point = _balanced_accuracy(y_t, pred_t, torch.arange(len(y_np))[None], k)[0]
        out["balanced_accuracy"].append((float(point), _balanced_accuracy(y_t, pred_t, index, k)))
        out["auroc"].append((_auroc(y_np, prob), np.array([_auroc(y_np[r], prob[r]) for r in rows])))
    return out


def per_class_recall(y: Sequence[int], prob: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Recall of each probed class (how often its films were recognised as it)."""
    y_np, pred = np.asarray(y), np.asarray(prob).argmax(axis=1)
    return {n: float((pred[y_np == i] == i).mean()) if (y_np == i).any() else float("nan")
            for i, n in enumerate(names)}


def paired_changes(y_true: Sequence[int], preds: Mapping[str, Sequence[int]], patients: Sequence,
                   reference: str = "untouched", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (condition, metric) for ``accuracy`` and ``recall_<class>``: the value under the condition
    and under ``reference`` with intervals, and the paired difference (condition - reference) with its
    interval; ``preds`` maps condition names (``reference`` among them) to predicted class indices."""
    y = torch.as_tensor(np.array(y_true, dtype=np.int64))
    index = patient_resamples(list(patients), list(np.asarray(y_true)), n_boot=n_boot, seed=seed)
    names = ["accuracy", *[f"recall_{c}" for c in CLASSES]]
    point, boot = {}, {}
    for cond, pred in preds.items():
        p = torch.as_tensor(np.array(pred, dtype=np.int64))  # a copy: pandas' arrays may be read-only
        point[cond] = {k: v[0] for k, v in batched_metrics(y, p).items()}
        boot[cond] = batched_metrics(y, p, index=index)
    rows = []
    for cond in preds:
        if cond == reference:
            continue
        for name in names:
            ref = interval(point[reference][name], boot[reference][name])
            now = interval(point[cond][name], boot[cond][name])
            diff = interval(point[cond][name] - point[reference][name],
                            boot[cond][name] - boot[reference][name])
            rows.append({"condition": cond, "metric": name, "reference": ref["value"],
                         "reference_low": ref["low"], "reference_high": ref["high"], "value": now["value"],
                         "low": now["low"], "high": now["high"], "diff": diff["value"],
                         "diff_low": diff["low"], "diff_high": diff["high"]})
    return pd.DataFrame(rows)
