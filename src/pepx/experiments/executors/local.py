"""`local`: the runs of a grid on this machine - in this process with one job, else ``jobs`` spawned worker
processes (a `concurrent.futures.ProcessPoolExecutor`) with ``cores // jobs`` torch threads each.

``spawn``: no OpenMP state is inherited. A run's result does not depend on ``jobs`` as long as its thread
count does not (float reductions can differ between thread counts; pin ``num_threads`` to compare).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pepx.errors import ConfigError
from pepx.experiments.executors.base import Executor, Outcome, Task, train_run


def threads_per_job(n_jobs: int, requested: int | None, cores: int | None = None) -> int | None:
    """Torch threads of one run when ``n_jobs`` run at once: ``cores // n_jobs`` (at least 1), or
    ``requested`` when that is smaller. With one job, ``requested`` (None = torch's default)."""
    if n_jobs < 1:
        raise ConfigError(f"--jobs {n_jobs}: must be >= 1")
    if n_jobs == 1:
        return requested
    share = max(1, (cores or os.cpu_count() or 1) // n_jobs)
    return share if requested is None else min(requested, share)


class _Done:
    """The handle of a run trained in this process (one job): it has ended when `submit` returns."""

    def __init__(self, seconds: float) -> None:
        self.outcome = Outcome(seconds=seconds)


class LocalExecutor(Executor):
    """This machine: one run at a time in this process (``jobs=1``; SIGTERM / SIGINT then end the grid at
    once with the run's own message), or ``jobs`` worker processes.

    Args:
        jobs: runs trained at once (default 1).
    """

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        jobs = 1 if jobs is None else jobs
        threads_per_job(jobs, None)  # refuses jobs < 1
        super().__init__(jobs)
        self.in_process = jobs == 1
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        return "local (this process)" if self.slots == 1 else f"local ({self.slots} processes)"

    def threads(self, requested: int | None) -> int | None:
        return threads_per_job(int(self.slots or 1), requested)

    def submit(self, task: Task) -> Any:
        if self.slots == 1:  # in this process: RunInterrupted and any error of the run propagate from here
            return _Done(float(train_run(task.config, task.folder, worker=False) or 0.0))
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.slots,
                                             mp_context=multiprocessing.get_context("spawn"))
        try:
            return self._pool.submit(train_run, task.config, task.folder)
        except BrokenProcessPool:  # a worker died earlier: start a fresh pool
            self._pool.shutdown(wait=False)
            self._pool = None
            return self.submit(task)

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, Outcome]]:
        ended = [h for h in handles if isinstance(h, _Done)]
        if ended:
            return [(h, h.outcome) for h in ended]
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return [(future, _outcome(future)) for future in done]

    def stop(self, handles: Sequence[Any], force: bool = False) -> None:
        for child in multiprocessing.active_children():
            if force:
                child.kill()
            else:
                child.terminate()  # SIGTERM: the worker's own handler stops after the batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _outcome(future: Future) -> Outcome:
    try:
        seconds = future.result()
    except BrokenProcessPool:  # the worker died (killed, out of memory), or a signal reached it early
        return Outcome(lost="its worker process died")
    except Exception as err:  # noqa: BLE001 - the run's own error, re-raised by the grid
        return Outcome(error=err)
    return Outcome(seconds=seconds) if seconds is not None else Outcome(stopped=True)
