"""What training prints: Lightning's own chatter silenced, and a progress bar that numbers epochs as pepx's
log lines do (``epoch 2/3``), with each of those lines printed above the bar rather than glued onto it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from tqdm import tqdm

#: Lightning's loggers: device summary, tips, `limit_val_batches` notes, `weights_only` notices, fit stopped.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning logs warnings and errors only while the block runs (its INFO lines say nothing a pepx user
    needs: `GPU available: False`, a `litlogger` tip, `Trainer.fit stopped: max_epochs reached`, ...)."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


class _BarSafeHandler(logging.StreamHandler):
    """Writes a record with `tqdm.write`: the bar is cleared, the line printed on its own, the bar redrawn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


class EpochBar(TQDMProgressBar):
    """Lightning's tqdm bar, labelled ``epoch N/EPOCHS`` (1-based, as pepx's epoch lines), that routes the
    ``pepx`` logger's console lines through `tqdm.write` while training runs."""

    def __init__(self, logger: str = "pepx") -> None:
        super().__init__(refresh_rate=1)
        self._logger = logging.getLogger(logger)
        self._saved: list[logging.Handler] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._saved = list(self._logger.handlers)
        swapped: list[logging.Handler] = []
        for handler in self._saved:
            if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr):
                bar_safe = _BarSafeHandler(handler.stream)
                bar_safe.setFormatter(handler.formatter)
                bar_safe.setLevel(handler.level)
                handler = bar_safe
            swapped.append(handler)
        self._logger.handlers = swapped

    def _restore(self) -> None:
        if self._saved is not None:
            self._logger.handlers = self._saved
            self._saved = None

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        bar = self.train_progress_bar  # Lightning's reset, labelled before the redraw (no `Epoch 0` flash)
        bar.set_description(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", refresh=False)
        bar.reset(total=convert_inf(self.total_train_batches))
        bar.initial = 0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, error: BaseException) -> None:
        self._restore()
