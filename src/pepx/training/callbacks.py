"""Callbacks writing the run folder: `metrics.csv` rows and per-epoch weights (`RunWriter`), the training
state after every epoch (`EpochCheckpoint`), and throughput (`BatchTimer`). File names come from `RunLayout`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from safetensors.torch import save_model

from pepx.fileio import atomic_path, write_bytes
from pepx.models import residual_scalars
from pepx.training.layout import RunLayout

log = logging.getLogger("pepx.training")
#: Columns of metrics.csv whose values are wall-clock timings (differ between otherwise identical runs).
TIMING_COLUMNS = ("epoch_seconds", "images_per_second")


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Keep only the rows of `path` with `epoch <= last_epoch` (a resumed run redoes the rest)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= last_epoch]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    """``epoch 2/3  train_loss 0.9712  train_acc 0.528  test_acc 0.467  (1.4 s)``."""
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for key in ("train_loss", "train_acc", "val_acc", "test_acc"):
        value = row.get(key)
        if isinstance(value, float) and not math.isnan(value):
            parts.append(f"{key} {value:.4f}")
    return "  ".join(parts) + f"  ({row['epoch_seconds']:.1f} s)"


class RunWriter(L.Callback):
    """At the end of every training epoch (after evaluation, before the checkpoint) append one metrics row,
    save `weights/epoch_NNN.safetensors` (atomically) and log one line to the ``pepx.training`` logger.
    Rank 0 writes. The final `model.safetensors` is written by `fit`, last of all.

    `epoch` is 1-based (the number of epochs trained). `epoch_seconds` is the whole epoch's wall time,
    evaluation included; `images_per_second` is training images (all processes) per second of training.

    Args:
        run_dir: the run folder (a path or a `RunLayout`).
    """

    def __init__(self, run_dir: str | Path | RunLayout) -> None:
        self.layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(run_dir)
        self.last_row: dict[str, Any] = {}
        #: Epochs (1-based) this process trained, in order: a resumed run lists only the remaining ones.
        self.trained_epochs: list[int] = []
        self._start = self._train_end = 0.0
        self._images = 0

    @property
    def metrics_path(self) -> Path:
        return self.layout.metrics

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            truncate_metrics(self.metrics_path, trainer.current_epoch)
            self.layout.weights_dir.mkdir(parents=True, exist_ok=True)
            if trainer.current_epoch:
                log.info("resuming %s after epoch %d of %d", self.layout.root, trainer.current_epoch,
                         trainer.max_epochs)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._train_end = time.perf_counter()
        self._images = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._images += len(batch[1]) * trainer.world_size
        self._train_end = time.perf_counter()
        seconds = self._train_end - self._start
        if seconds > 0:
            pl_module.log("img/s", self._images / seconds, prog_bar=True, logger=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        summary = pl_module.epoch_summary()  # collective: every rank calls it
        train_seconds = self._train_end - self._start
        row = {"epoch": trainer.current_epoch + 1, "train_loss": summary.pop("train_loss"),
               "train_acc": summary.pop("train_acc"), "lr": summary.pop("lr"),
               "epoch_seconds": time.perf_counter() - self._start,
               "images_per_second": self._images / train_seconds if train_seconds > 0 else float("nan"),
               **summary, **residual_scalars(pl_module.model)}
        pl_module.check_finite(row["train_loss"])  # NaN weights are never saved
        self.last_row = row
        self.trained_epochs.append(row["epoch"])
        if trainer.is_global_zero:
            self._append(row)
            with atomic_path(self.layout.epoch_weights(row["epoch"])) as tmp:
                save_model(pl_module.model, str(tmp))
            log.info(_epoch_line(row, trainer.max_epochs or 0))

    def _append(self, row: dict[str, Any]) -> None:
        """Add `row` to metrics.csv, rewriting it atomically: a full disk never leaves half a row."""
        old = self.metrics_path.read_bytes() if self.metrics_path.exists() else b""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(row))
        if not old:
            writer.writeheader()
        writer.writerow(row)
        write_bytes(self.metrics_path, old + buffer.getvalue().encode())


class EpochCheckpoint(Checkpoint):
    """Write ``checkpoints/last.ckpt`` (the whole Lightning training state) at the end of every training
    epoch, atomically: a temporary file renamed into place, so a kill during the write keeps the previous one.

    Lightning's `ModelCheckpoint(save_top_k=0, save_last=True)` writes ``last`` only after a top-k save, i.e.
    only when training ends, so a killed run had nothing to resume from. Being a `Checkpoint`, this callback
    runs after every other callback's ``on_train_epoch_end`` (the metrics row and the weights come first).

    Args:
        run_dir: the run folder (a path or a `RunLayout`).
    """

    def __init__(self, run_dir: str | Path | RunLayout) -> None:
        self.layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(run_dir)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self.layout.checkpoint
        if not trainer.is_global_zero:
            trainer.save_checkpoint(path)  # collective under DDP: only rank 0 writes
            return
        with atomic_path(path) as tmp:
            trainer.save_checkpoint(tmp)


class BatchTimer(L.Callback):
    """Splits each training epoch into time waiting for data and time computing (`benchmarks/train.py`)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._mark = 0.0
        self._data = self._compute = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._data = self._compute = 0.0
        self._images = 0
        self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        now = time.perf_counter()
        self._data += now - self._mark
        self._mark = now

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        self._compute += now - self._mark
        self._images += len(batch[1]) * trainer.world_size
        self._mark = now

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = self._data + self._compute
        rate = self._images / total if total else 0.0
        self.epochs.append({"data_seconds": self._data, "compute_seconds": self._compute,
                            "images": self._images, "images_per_second": rate})
