"""Callbacks writing the run folder: `metrics.csv` rows, per-epoch safetensors weights, throughput."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors.torch import save_model

from pepx.models import residual_scalars

METRICS_FILE = "metrics.csv"
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
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


class RunWriter(L.Callback):
    """At the end of every training epoch (after evaluation, before the checkpoint) append one metrics row and
    save `weights/epoch_NNN.safetensors`; at the end of training save `model.safetensors`. Rank 0 writes.

    `epoch` is 1-based (the number of epochs trained). `epoch_seconds` is the whole epoch's wall time,
    evaluation included; `images_per_second` is training images (all processes) per second of training.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.last_row: dict[str, Any] = {}
        self._start = self._train_end = 0.0
        self._images = 0

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            truncate_metrics(self.metrics_path, trainer.current_epoch)
            (self.run_dir / "weights").mkdir(parents=True, exist_ok=True)

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
        self.last_row = row
        if trainer.is_global_zero:
            self._append(row)
            name = f"epoch_{row['epoch']:03d}.safetensors"
            save_model(pl_module.model, str(self.run_dir / "weights" / name))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            save_model(pl_module.model, str(self.run_dir / "model.safetensors"))

    def _append(self, row: dict[str, Any]) -> None:
        new = not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0
        with self.metrics_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())


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
