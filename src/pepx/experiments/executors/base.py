"""The contract between the grid and the engine that runs its training runs, and what a worker runs.

The grid (`pepx.experiments.parallel.run_jobs`) decides which runs to train, logs, records wall times and
handles SIGTERM / SIGINT; an `Executor` only starts a `Task` somewhere (a local process, a Ray task, a SLURM
job), reports how each one ended (`Outcome`) and passes a stop on to the runs in progress. Every worker calls
`train_run`, which decides itself whether to start or resume the run from its folder, so a run restarted by
the engine after its worker died continues after its last finished epoch.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pepx.errors import RunInterrupted
from pepx.training import TrainConfig, fit
from pepx.training.layout import RunLayout


@dataclass(frozen=True)
class Task:
    """One run handed to an executor.

    Args:
        name: the run's name, unique in the grid (also the job's name on the cluster).
        config: its `TrainConfig` fields, ``num_threads`` set by the executor.
        folder: its run folder, absolute (workers on other machines see the same shared path).
        log_dir: where an engine that keeps per-job logs writes them (SLURM).
    """

    name: str
    config: dict[str, Any]
    folder: str
    log_dir: str


@dataclass(frozen=True)
class Outcome:
    """How one attempt of a run ended: ``seconds`` (finished: its wall seconds in the worker), ``stopped``
    (by a signal, its last finished epoch kept), ``lost`` (the worker died: why), or ``error`` (the run
    raised)."""

    seconds: float | None = None
    stopped: bool = False
    lost: str = ""
    error: BaseException | None = None


def train_run(config: dict[str, Any], folder: str, worker: bool = True) -> float | None:
    """Train (or resume, when its folder holds a started run) one run in this process; its wall seconds. In a
    ``worker``, a run stopped by SIGTERM / SIGINT (its finished epochs kept) returns None: `RunInterrupted`
    does not survive pickling back to the grid."""
    start = time.perf_counter()
    try:
        fit(TrainConfig.from_dict(config), folder, resume=RunLayout(folder).holds_run())
    except RunInterrupted:
        if not worker:
            raise
        return None
    return time.perf_counter() - start


class Executor(ABC):
    """Runs tasks somewhere. Subclasses name themselves (``name``), say how many tasks may run at once
    (``slots``; None: as many as the engine schedules) and how many torch threads one run gets."""

    name: ClassVar[str]
    #: True when runs train in the calling process (SIGTERM / SIGINT then reach the run directly).
    in_process = False

    def __init__(self, slots: int | None) -> None:
        self.slots = slots

    def open(self) -> Executor:
        """Connect to the engine (idempotent); `ConfigError` when it cannot be used. Called before the grid
        writes anything."""
        return self

    def close(self) -> None:  # noqa: B027 - most engines have nothing to release
        """Release what `open` started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def describe(self) -> str:
        """One phrase for the log, e.g. ``ray (local cluster, 2 CPUs)``."""

    @abstractmethod
    def threads(self, requested: int | None) -> int | None:
        """Torch threads of one run whose config asks for ``requested`` (None: torch's default)."""

    @abstractmethod
    def submit(self, task: Task) -> Any:
        """Start ``task``; returns a handle for `wait` and `stop`."""

    @abstractmethod
    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, Outcome]]:
        """The handles that ended within ``timeout`` seconds, with their outcomes (possibly none)."""

    @abstractmethod
    def stop(self, handles: Sequence[Any], force: bool = False) -> None:
        """Ask the runs of ``handles`` to stop after their current batch (SIGTERM or the engine's cancel);
        ``force``: kill them now (their last finished epoch is kept either way)."""

