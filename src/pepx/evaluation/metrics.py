"""Classification metrics from a predictions frame, computed with torchmetrics.

Every metric is computed by :func:`batched_metrics`, which evaluates many index sets at once (torchmetrics'
``multidim_average="samplewise"`` with ``-1`` padding as ``ignore_index``): the point estimate is the single
index set "all rows", a bootstrap is 2000 resampled index sets. One code path, so CIs and point estimates
agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from pepx import CLASSES

NUM_CLASSES = len(CLASSES)
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{c}" for c in CLASSES)
#: Equal-width confidence bins for the expected calibration error (torchmetrics' default).
ECE_BINS = 15


def metric_names(with_ece: bool = True) -> list[str]:
    """The metric keys, in report order."""
    names = ["accuracy", "macro_f1"]
    for kind in ("precision", "recall", "f1"):
        names += [f"{kind}_{c}" for c in CLASSES]
    return names + (["ece"] if with_ece else [])


def frame_arrays(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(y_true, y_pred, probs)`` tensors of a predictions frame; ``probs`` is None without prob columns."""
    y_true = torch.tensor(frame["y_true"].to_numpy(dtype=np.int64))
    y_pred = torch.tensor(frame["y_pred"].to_numpy(dtype=np.int64))
    probs = None
    if all(c in frame.columns for c in PROB_COLUMNS):
        probs = torch.tensor(frame[list(PROB_COLUMNS)].to_numpy(dtype=np.float32))
    return y_true, y_pred, probs


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: the metric tensors are small, and on a busy machine
    multi-threaded kernels on small tensors can be tens of times slower (OpenMP oversubscription)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@single_thread()
def batched_metrics(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    probs: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Every metric of :func:`metric_names` for each row of ``index`` (shape ``[B, L]``, ``-1`` = padding).

    ``index=None`` means one row holding all samples. Returns arrays of shape ``[B]``. Per-class values that
    are undefined (precision of a class never predicted, recall of a class absent) are NaN.
    """
    n = len(y_true)
    index = torch.arange(n)[None] if index is None else torch.as_tensor(index, dtype=torch.long)
    valid = index >= 0
    safe = index.clamp(min=0)
    target = torch.where(valid, y_true[safe], torch.full_like(safe, -1))
    preds = y_pred[safe]
    kw = dict(num_classes=NUM_CLASSES, multidim_average="samplewise", ignore_index=-1, validate_args=False)
    out = {
        "accuracy": multiclass_accuracy(preds, target, average="micro", **kw),
        "macro_f1": multiclass_f1_score(preds, target, average="macro", **kw),
    }
    for kind, fn in (("precision", multiclass_precision), ("recall", multiclass_recall),
                     ("f1", multiclass_f1_score)):
        per_class = fn(preds, target, average=None, zero_division=float("nan"), **kw)
        for k, c in enumerate(CLASSES):
            out[f"{kind}_{c}"] = per_class[:, k]
    if probs is not None:
        out["ece"] = torch.stack([
            multiclass_calibration_error(probs[row[ok]], y_true[row[ok]], num_classes=NUM_CLASSES,
                                         n_bins=ECE_BINS, norm="l1", validate_args=False)
            for row, ok in zip(index, valid, strict=True)
        ])
    return {k: v.double().numpy() for k, v in out.items()}


def compute_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Point estimates of every metric for a predictions frame."""
    return {k: float(v[0]) for k, v in batched_metrics(*frame_arrays(frame)).items()}


def confusion_matrix(frame: pd.DataFrame, normalize: str | None = None) -> np.ndarray:
    """``[true, predicted]`` confusion matrix; ``normalize="true"`` divides each row by its count."""
    y_true, y_pred, _ = frame_arrays(frame)
    cm = multiclass_confusion_matrix(y_pred, y_true, num_classes=NUM_CLASSES, normalize=normalize)
    return cm.numpy()


def mean_predictions(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Seed ensemble: mean probabilities of runs on the same images (aligned by ``path``), argmax predicts.

    One frame is returned unchanged. Used to test models once per grid cell when there are several seeds.
    """
    if len(frames) == 1:
        return frames[0]
    base = frames[0].set_index("path")
    cols = list(PROB_COLUMNS)
    probs = np.mean([f.set_index("path").loc[base.index, cols].to_numpy() for f in frames], axis=0)
    out = base.copy()
    out[list(PROB_COLUMNS)] = probs
    out["y_pred"] = probs.argmax(axis=1)
    return out.reset_index()
