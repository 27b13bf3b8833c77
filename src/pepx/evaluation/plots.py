"""Confusion-matrix and reliability-diagram PNGs (matplotlib's object API, Agg canvas: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pepx import CLASS_DISPLAY, CLASSES
from pepx.evaluation.metrics import ECE_BINS, PROB_COLUMNS
from pepx.fileio import atomic_path


def save(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure as PNG and return its path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
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
    fig = Figure(figsize=(4.6, 4.4))
    _draw_reliability(fig.add_subplot(), frame, n_bins, title if ece is None else f"{title} (ECE {ece:.3f})")
    return save(fig, path)


def plot_reliability_pair(before: pd.DataFrame, after: pd.DataFrame, path: str | Path,
                          titles: tuple[str, str] = ("before", "after"), n_bins: int = ECE_BINS) -> Path:
    """Two reliability diagrams side by side (e.g. before and after temperature scaling)."""
    fig = Figure(figsize=(9.2, 4.4))
    for k, (frame, title) in enumerate(zip((before, after), titles, strict=True)):
        _draw_reliability(fig.add_subplot(1, 2, k + 1), frame, n_bins, title)
    return save(fig, path)


def _draw_reliability(ax, frame: pd.DataFrame, n_bins: int, title: str) -> None:
    probs = frame[list(PROB_COLUMNS)].to_numpy(dtype=float)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == frame["y_true"].to_numpy()
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    acc = np.bincount(bins, weights=correct, minlength=n_bins) / np.maximum(count, 1)
    mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / np.maximum(count, 1)
    centres = (edges[:-1] + edges[1:]) / 2
    used = count > 0
    ax.bar(centres[used], acc[used], width=1 / n_bins, edgecolor="black", alpha=0.8, label="accuracy")
    ax.plot(mean_conf[used], acc[used], "o", color="C1", ms=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for x, y, n in zip(centres[used], acc[used], count[used], strict=True):
        ax.text(x, min(y + 0.02, 0.97), str(n), ha="center", fontsize=7)
    _unit_axes(ax, "confidence (top-class probability)", "accuracy", title, legend="upper left")


def plot_roc(curves: dict[str, pd.DataFrame], path: str | Path, aurocs: dict[str, str] | None = None,
             title: str = "ROC (one class vs the rest)") -> Path:
    """One ROC curve per class (``{class: DataFrame(fpr, tpr)}``); ``aurocs`` labels each curve."""
    fig = Figure(figsize=(4.6, 4.4))
    ax = fig.add_subplot()
    for cls, display in zip(CLASSES, CLASS_DISPLAY, strict=True):
        if cls in curves:
            label = display + (f" (AUROC {aurocs[cls]})" if aurocs and cls in aurocs else "")
            ax.plot(curves[cls]["fpr"], curves[cls]["tpr"], label=label, lw=1.5)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    _unit_axes(ax, "1 - specificity (false-positive rate)", "sensitivity (true-positive rate)", title,
               legend="lower right")
    return save(fig, path)


def _unit_axes(ax, xlabel: str, ylabel: str, title: str, legend: str) -> None:
    """Both axes on [0, 1] (a little headroom on y), labels, title and a small legend."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc=legend, fontsize=7)
