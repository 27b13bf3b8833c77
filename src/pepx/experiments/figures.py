"""Figure 9 (accuracy vs epoch), Figure 10 a/b/c (per-class F1 vs epoch), the A/B/C-per-block plot and the
optimisation figure (training loss beside test accuracy per epoch).

Inputs are the runs' ``metrics.csv`` frames grouped by grid cell (``(model, loss) -> [one frame per seed]``,
or one per fold and seed under cross-validation: ``unit="folds"``). A line is the mean over the frames; the
band is their min-max (absent with one frame).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pepx import CLASS_DISPLAY, CLASSES
from pepx.evaluation.plots import save
from pepx.experiments.tables import LOSS_NAMES
from pepx.models.registry import display_name, registered_info

Cells = Mapping[tuple[str, str], Sequence[pd.DataFrame]]
LOSS_STYLES = {"ce": "--", "focal": "-"}
RESIDUAL = re.compile(r"^(?P<block>.+)\.(?P<scalar>[ABC])$")


def _stack(frames: Sequence[pd.DataFrame], column: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and a ``[seeds, epochs]`` array of ``column`` over the epochs all seeds share."""
    epochs = sorted(set.intersection(*(set(f["epoch"]) for f in frames)))
    values = np.array([f.set_index("epoch").loc[epochs, column].to_numpy(dtype=float) for f in frames])
    return np.asarray(epochs), values


def _curves(ax: Axes, cells: Cells, column: str, ylabel: str) -> None:
    for (model, loss), frames in cells.items():
        epochs, values = _stack(frames, column)
        info = registered_info(model)
        color, style = info.color if info else None, LOSS_STYLES.get(loss, ":")
        ax.plot(epochs, values.mean(axis=0), style, color=color, marker="o", ms=3,
                label=f"{display_name(model)} + {LOSS_NAMES.get(loss, loss)}")
        if len(frames) > 1:
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=color, alpha=0.15, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _seed_note(cells: Cells, unit: str = "seeds") -> str:
    n = max(len(f) for f in cells.values())
    return f"mean of {n} {unit}, band = min-max" if n > 1 else f"1 {unit.rstrip('s')}"


def figure9(cells: Cells, path: str | Path, unit: str = "seeds") -> Path:
    """Test accuracy against epoch, one curve per network x loss."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    _curves(ax, cells, "test_acc", "test accuracy")
    ax.set_title(f"Figure 9: accuracy of different networks and losses ({_seed_note(cells, unit)})")
    ax.legend(fontsize=8)
    return save(fig, path)


def figure10(cells: Cells, path: str | Path, unit: str = "seeds") -> Path:
    """Per-class test F1 against epoch: (a) Normal, (b) Non-COVID, (c) COVID-19."""
    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, len(CLASSES), sharey=True)
    for k, (ax, cls, display) in enumerate(zip(axes, CLASSES, CLASS_DISPLAY, strict=True)):
        _curves(ax, cells, f"test_f1_{cls}", "test F1")
        ax.set_title(f"({'abc'[k]}) F1 of {display}")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Figure 10: F1 score of different networks and losses ({_seed_note(cells, unit)})")
    return save(fig, path)


def optimisation_figure(cells: Cells, path: str | Path, unit: str = "seeds", mark_epoch: int | None = None
                        ) -> Path:
    """Training loss (left) and test accuracy (right) against epoch, one line per network, one row per loss
    (the losses differ in scale); ``mark_epoch`` draws a dotted line where the early-epoch test is made."""
    losses = list(dict.fromkeys(loss for _, loss in cells))
    fig = Figure(figsize=(12, 4.2 * len(losses)))
    axes = fig.subplots(len(losses), 2, squeeze=False)
    for row, loss in zip(axes, losses, strict=True):
        sub = {cell: frames for cell, frames in cells.items() if cell[1] == loss}
        name = LOSS_NAMES.get(loss, loss)
        for ax, column, label in ((row[0], "train_loss", f"training loss ({name})"),
                                  (row[1], "test_acc", "test accuracy")):
            _curves(ax, sub, column, label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if mark_epoch is not None:
                ax.axvline(mark_epoch, color="0.5", ls=":", lw=1)
        row[0].legend(fontsize=8)
    fig.suptitle("Ease of optimisation: training loss and test accuracy per epoch "
                 f"({_seed_note(cells, unit)})")
    return save(fig, path)


def residual_columns(frame: pd.DataFrame) -> list[str]:
    """The ``<block>.A/B/C`` columns of a metrics frame."""
    return [c for c in frame.columns if RESIDUAL.match(c)]


def residual_figure(cells: Cells, path: str | Path, unit: str = "seeds") -> Path | None:
    """A, B and C of each PEPX-ResNet block against epoch (one panel per scalar, a line per block and loss).

    Returns None when no run logged residual scalars.
    """
    cells = {k: v for k, v in cells.items() if residual_columns(v[0])}
    if not cells:
        return None
    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    for ax, scalar in zip(axes, "ABC", strict=True):
        for (_, loss), frames in cells.items():
            blocks = [c for c in residual_columns(frames[0]) if c.endswith(f".{scalar}")]
            for i, col in enumerate(blocks):
                epochs, values = _stack(frames, col)
                ax.plot(epochs, values.mean(axis=0), LOSS_STYLES.get(loss, ":"), color=f"C{i % 10}",
                        label=f"{col[:-2]} ({LOSS_NAMES.get(loss, loss)})")
                if len(frames) > 1:  # the min-max band the title promises
                    ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=f"C{i % 10}",
                                    alpha=0.15, lw=0)
        ax.set_title(f"{scalar} per block")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"PEPX-ResNet residual weights A, B, C over training ({_seed_note(cells, unit)})")
    return save(fig, path)
