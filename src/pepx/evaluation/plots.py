"""Confusion-matrix and reliability-diagram PNGs (matplotlib's object API, Agg canvas: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pepx import CLASS_DISPLAY
from pepx.evaluation.metrics import ECE_BINS, PROB_COLUMNS


def save(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure as PNG and return its path."""
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_confusion(cm: np.ndarray, path: str | Path, title: str = "Confusion matrix") -> Path:
    """Heat map of counts with row-normalised shading (rows = true class)."""
    cm = np.asarray(cm, dtype=float)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(4.6, 4))
    ax = fig.add_subplot()
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}\n{rows[i, j]:.0%}", ha="center", va="center",
                    color="white" if rows[i, j] > 0.5 else "black", fontsize=9)
    ticks = range(len(CLASS_DISPLAY))
    ax.set_xticks(ticks, CLASS_DISPLAY)
    ax.set_yticks(ticks, CLASS_DISPLAY)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save(fig, path)


def plot_reliability(frame: pd.DataFrame, path: str | Path, n_bins: int = ECE_BINS, ece: float | None = None,
                     title: str = "Reliability diagram") -> Path:
    """Accuracy against confidence (top-class probability) in equal-width bins, with the identity line."""
    probs = frame[list(PROB_COLUMNS)].to_numpy(dtype=float)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == frame["y_true"].to_numpy()
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    acc = np.bincount(bins, weights=correct, minlength=n_bins) / np.maximum(count, 1)
    mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / np.maximum(count, 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = Figure(figsize=(4.6, 4.4))
    ax = fig.add_subplot()
    used = count > 0
    ax.bar(centres[used], acc[used], width=1 / n_bins, edgecolor="black", alpha=0.8, label="accuracy")
    ax.plot(mean_conf[used], acc[used], "o", color="C1", ms=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for x, y, n in zip(centres[used], acc[used], count[used], strict=True):
        ax.text(x, min(y + 0.02, 0.97), str(n), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title if ece is None else f"{title} (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return save(fig, path)
