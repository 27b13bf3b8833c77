"""`RunLayout`: the one owner of a training run folder's file names and of its state.

    RUN/
      config.yaml                      the resolved TrainConfig (written when training starts)
      split.csv                        the rows used, with their split
      metrics.csv                      one row per finished epoch
      weights/epoch_NNN.safetensors    weights after epoch NNN (1-based)
      checkpoints/last.ckpt            Lightning training state after the newest finished epoch
      model.safetensors                final weights, written last: its presence marks a complete run
      predictions.csv                  the final model on the test split
      eval/                            `pepx evaluate`'s default report folder
      .lock                            held by the `pepx train` writing the folder (a second one is refused)

Every file is written through `pepx.fileio.atomic_path` (a temporary file renamed into place), so a kill or
a full disk leaves the previous version whole. The pattern is MONAI's `monai.data.folder_layout.FolderLayout`:
one object knows every name. This module imports neither torch nor lightning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from pepx.errors import RunError
from pepx.fileio import atomic_path

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.safetensors$")


@dataclass(frozen=True)
class RunState:
    """Where a run stands: ``complete`` (final weights written), ``incomplete`` (stopped after some epoch) or
    ``empty`` (no epoch finished).

    Args:
        status: ``"complete"``, ``"incomplete"`` or ``"empty"``.
        epochs_done: the newest epoch with saved weights (0 when none).
        epochs_planned: ``epochs`` of the run's config, or None when it cannot be read.
        has_checkpoint: whether ``checkpoints/last.ckpt`` exists (what ``--resume`` continues from).
    """

    status: Literal["complete", "incomplete", "empty"]
    epochs_done: int
    epochs_planned: int | None
    has_checkpoint: bool

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def describe(self) -> str:
        """One line, e.g. ``incomplete: stopped after epoch 1 of 3``."""
        of = f" of {self.epochs_planned}" if self.epochs_planned else ""
        if self.status == "complete":
            return f"complete: {self.epochs_done}{of} epochs"
        if self.status == "incomplete":
            return f"incomplete: stopped after epoch {self.epochs_done}{of}"
        return "empty: no epoch finished"


@dataclass(frozen=True)
class RunLayout:
    """The files of one run folder (see the module docstring) and its state.

    Args:
        root: the run folder (need not exist yet).
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    # ------------------------------------------------------------------ names
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def split(self) -> Path:
        return self.root / "split.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def weights_dir(self) -> Path:
        return self.root / "weights"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.ckpt"

    @property
    def final_weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def lock(self) -> Path:
        """The lock file a training process holds while it writes the folder."""
        return self.root / ".lock"

    def epoch_weights(self, epoch: int) -> Path:
        """``weights/epoch_NNN.safetensors`` of 1-based ``epoch``."""
        return self.weights_dir / f"epoch_{int(epoch):03d}.safetensors"

    # ------------------------------------------------------------------ state
    def saved_epochs(self) -> list[int]:
        """Epochs with saved weights, ascending."""
        if not self.weights_dir.is_dir():
            return []
        found = (_EPOCH_FILE.match(p.name) for p in self.weights_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def holds_files(self) -> bool:
        """True when the folder exists and holds anything (a run or not)."""
        return self.root.is_dir() and any(self.root.iterdir())

    def holds_run(self) -> bool:
        """True when training has written anything beyond its config (metrics, weights or a checkpoint)."""
        return (self.metrics.exists() or self.checkpoint.exists() or self.final_weights.exists()
                or bool(self.saved_epochs()))

    def planned_epochs(self) -> int | None:
        """``epochs`` from ``config.yaml``, or None when it is missing or unreadable."""
        try:
            value = (yaml.safe_load(self.config.read_text()) or {}).get("epochs")
        except (OSError, yaml.YAMLError, AttributeError):
            return None
        return value if isinstance(value, int) else None

    def state(self) -> RunState:
        """Complete (``model.safetensors`` written), incomplete (some epoch finished) or empty."""
        epochs = self.saved_epochs()
        done = epochs[-1] if epochs else 0
        planned = self.planned_epochs()
        status: Literal["complete", "incomplete", "empty"]
        if self.final_weights.exists():
            status = "complete"
        elif done or self.checkpoint.exists():
            status = "incomplete"
        else:
            status = "empty"
        return RunState(status, done, planned, self.checkpoint.exists())

    def require(self) -> RunLayout:
        """Raise `RunError` unless the folder is a run (has ``config.yaml``); return self."""
        if not self.config.is_file():
            what = "no such folder" if not self.root.exists() else "not a run folder written by `pepx train`"
            raise RunError(f"{self.config}: not found ({self.root}: {what})")
        return self

    def resolve_weights(self, epoch: int | None = None) -> tuple[Path, str | None]:
        """The weights to score and a note saying what they are (None for a complete run's final weights).

        ``epoch`` picks ``weights/epoch_NNN``; None takes ``model.safetensors`` when the run is complete,
        else the newest epoch's weights with a note that the run is incomplete. `RunError` when there are
        none.
        """
        state = self.state()
        saved = self.saved_epochs()
        if epoch is not None:
            path = self.epoch_weights(epoch)
            if not path.is_file():
                have = f"saved epochs: {_ranges(saved)}" if saved else "no epoch weights saved"
                raise RunError(f"{self.root}: no weights for epoch {epoch} ({have})")
            final = " (the final epoch)" if state.complete and epoch == state.epochs_done else ""
            return path, f"Scored {_rel(path, self.root)}: epoch {epoch}{final}; run {state.describe()}."
        if state.complete:
            return self.final_weights, None
        if not saved:
            raise RunError(f"{self.root}: no weights to score (no {self.final_weights.name}, no "
                           f"weights/epoch_*.safetensors; run {state.describe()})")
        path = self.epoch_weights(saved[-1])
        return path, (f"Run incomplete ({state.describe()}): scored {_rel(path, self.root)}, not final "
                      "weights. Resume it with `pepx train --resume RUN`, or pick an epoch with --weights N.")


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _ranges(values: list[int]) -> str:
    """``1-3, 5`` for [1, 2, 3, 5]."""
    parts: list[str] = []
    start = prev = None
    for v in [*values, None]:
        if start is not None and (v is None or v != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if v is not None and start is None:
            start = v
        prev = v
    return ", ".join(parts)


__all__ = ["RunLayout", "RunState", "atomic_path"]
