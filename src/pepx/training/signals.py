"""Stop training cleanly on SIGTERM or SIGINT (a job scheduler's pre-emption, Ctrl-C).

Lightning alone exits 0 on SIGTERM (its `SIGTERMException` is a bare `SystemExit`) and 1 on SIGINT, with
nothing printed, so a scheduler records success. `GracefulStop` instead notes the signal, lets the current
batch finish, and raises `pepx.errors.RunInterrupted` at the next batch end: the run keeps its last finished
epoch (weights, metrics row and `checkpoints/last.ckpt`), and the CLI prints one line and exits 128 + signal
(143 for SIGTERM, 130 for SIGINT). A second signal stops at once. Signals arriving before the first batch
(while images are being cached) stop at once too.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

from pepx.errors import RunInterrupted
from pepx.training.layout import RunLayout

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop(L.Callback):
    """A context manager installing SIGTERM/SIGINT handlers (main thread only) and a callback stopping
    training after the batch in progress.

    Args:
        run_dir: the run folder, named in the message with the resume command.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.layout = RunLayout(run_dir)
        self.signum: int | None = None
        self.epoch = 0
        self.epochs = 0
        self._saved: dict[int, Any] = {}
        self._deferred = False

    # ------------------------------------------------------------------ handlers
    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
        self._deferred = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = signum
        if not first or not self._deferred:
            raise self.interrupted()

    def interrupted(self, signum: int | None = None) -> RunInterrupted:
        """The `RunInterrupted` error for the signal received (or ``signum``)."""
        signum = int(signum or self.signum or signal.SIGTERM)
        state = self.layout.state()
        where = f" in epoch {self.epoch} of {self.epochs}" if self.epoch else " before the first epoch"
        kept = (f"keeps {state.epochs_done} finished epoch{'s' if state.epochs_done != 1 else ''} "
                f"({self.layout.checkpoint.relative_to(self.layout.root)})" if state.has_checkpoint
                else "has no finished epoch yet")
        root = self.layout.root
        name = signal.Signals(signum).name
        return RunInterrupted(str(root), signum, f"interrupted by {name}{where}: {root} {kept}; "
                                                 f"continue with `pepx train --resume {root}`")

    # ------------------------------------------------------------------ callback
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._deferred = True
        self.epochs = trainer.max_epochs or 0
        self._check()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch = trainer.current_epoch + 1
        self._check()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._check()

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._check()

    def settle(self) -> None:
        """Training is over: stop deferring, and raise if a signal came after the last batch."""
        self._deferred = False
        self._check()

    def _check(self) -> None:
        if self.signum is not None:
            raise self.interrupted()


__all__ = ["GracefulStop"]
