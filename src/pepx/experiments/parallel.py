"""Train a list of independent runs, one at a time or ``n_jobs`` at once in separate processes; resumable.

A run whose folder holds its final predictions after all its epochs is skipped; one with a checkpoint (or a
metrics file) is resumed, so a killed grid continues where it stopped. Wall seconds per run, summed over
attempts, are kept in a JSON file beside the runs.

With ``n_jobs > 1`` each run trains in its own process (``spawn``: no OpenMP state is inherited) with
``cores // n_jobs`` torch threads - or the run's own ``num_threads`` when that is smaller - so the processes
share the cores instead of fighting over them. A run's result does not depend on ``n_jobs`` as long as its
thread count does not (float reductions can differ between thread counts; pin ``num_threads`` to compare).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pepx.errors import ConfigError, RunInterrupted
from pepx.fileio import write_text
from pepx.training import TrainConfig, fit
from pepx.training.layout import RunLayout


@dataclass(frozen=True)
class Job:
    """One training run: its name (unique in the grid), `TrainConfig` fields and run folder."""

    name: str
    config: dict[str, Any]
    folder: Path


def is_complete(path: Path, epochs: int) -> bool:
    """True when the run folder is complete (`RunLayout.state`) after all ``epochs``."""
    state = RunLayout(path).state()
    return state.complete and state.epochs_done >= epochs


def has_started(path: Path) -> bool:
    """True when the run folder holds a partial run to resume."""
    return RunLayout(path).holds_run()


def threads_per_job(n_jobs: int, requested: int | None, cores: int | None = None) -> int | None:
    """Torch threads of one run when ``n_jobs`` run at once: ``cores // n_jobs`` (at least 1), or
    ``requested`` when that is smaller. With one job, ``requested`` (None = torch's default)."""
    if n_jobs < 1:
        raise ConfigError(f"--jobs {n_jobs}: must be >= 1")
    if n_jobs == 1:
        return requested
    share = max(1, (cores or os.cpu_count() or 1) // n_jobs)
    return share if requested is None else min(requested, share)


def train_job(config: dict[str, Any], folder: str, resume: bool, worker: bool = False) -> float | None:
    """Fit one run (in this process); returns its wall seconds. In a ``worker`` process, a run stopped by a
    signal returns None (`RunInterrupted` does not survive pickling back to the parent)."""
    start = time.perf_counter()
    try:
        fit(TrainConfig.from_dict(config), folder, resume=resume)
    except RunInterrupted:
        if not worker:
            raise
        return None
    return time.perf_counter() - start


def run_jobs(jobs: Sequence[Job], timings_file: Path, n_jobs: int = 1,
             log: Callable[[str], None] = print) -> None:
    """Train every job that is not complete; ``n_jobs`` at a time in worker processes when > 1."""
    timings: dict[str, float] = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    todo: list[tuple[int, Job, bool]] = []
    for i, job in enumerate(jobs, 1):
        if is_complete(job.folder, int(job.config["epochs"])):
            log(f"[{i}/{len(jobs)}] {job.name}: complete, skipped")
        else:
            todo.append((i, job, has_started(job.folder)))
    threads = {job.name: threads_per_job(n_jobs, job.config.get("num_threads")) for _, job, _ in todo}

    def started(i: int, job: Job, resume: bool) -> None:
        log(f"[{i}/{len(jobs)}] {job.name}: {'resuming' if resume else 'training'} "
            f"({threads[job.name] or 'default'} threads) ...")

    def finished(i: int, job: Job, seconds: float) -> None:
        timings[job.name] = timings.get(job.name, 0.0) + seconds
        write_text(timings_file, json.dumps(timings, indent=1))
        log(f"[{i}/{len(jobs)}] {job.name}: done in {timings[job.name]:.1f} s")

    if n_jobs == 1 or len(todo) <= 1:
        for i, job, resume in todo:
            started(i, job, resume)
            seconds = train_job({**job.config, "num_threads": threads[job.name]}, str(job.folder), resume)
            finished(i, job, float(seconds or 0.0))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool, _StopWorkers() as stop:
        running: dict[Future, tuple[int, Job]] = {}
        queue = list(todo)
        while (queue and not stop.signum) or running:
            while queue and len(running) < n_jobs and not stop.signum:
                i, job, resume = queue.pop(0)
                started(i, job, resume)
                config = {**job.config, "num_threads": threads[job.name]}
                running[pool.submit(train_job, config, str(job.folder), resume, True)] = (i, job)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i, job = running.pop(future)
                try:
                    seconds = future.result()
                except BrokenProcessPool:  # a worker the signal reached before its training began
                    if not stop.signum:
                        raise
                    seconds = None
                if seconds is None:
                    log(f"[{i}/{len(jobs)}] {job.name}: stopped (resumes on the next call)")
                else:
                    finished(i, job, seconds)
    if stop.signum:
        name = signal.Signals(stop.signum).name
        out = timings_file.parent
        raise RunInterrupted(str(out), stop.signum, f"interrupted by {name}: {out}: the runs in progress "
                             "stopped after their batch and keep their finished epochs; run the same command "
                             "again to continue")


class _StopWorkers:
    """While the pool runs, SIGTERM / SIGINT to this process are passed on to the workers as SIGTERM, and
    ``signum`` is set so no further run starts: each worker stops after its batch with its last checkpoint
    (`pepx.training.signals`). Without it, the default SIGTERM kills only this process and leaves its workers
    training, then waiting for work forever."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _StopWorkers:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        for child in multiprocessing.active_children():
            child.terminate()  # SIGTERM: the worker's own handler stops after the batch

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
