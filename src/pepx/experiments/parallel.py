"""Train a list of independent runs on an executor (`pepx.experiments.executors`: this machine, Ray or
SLURM); resumable, and the same on every executor.

A run whose folder holds its final predictions after all its epochs is skipped; one with a checkpoint (or a
metrics file) is resumed, so a killed grid continues where it stopped. A run whose worker dies (killed, its
node lost) is started again, up to ``retries`` times, and resumes after its last finished epoch. Wall seconds
per run are kept in a JSON file beside the runs; the log has one line per started and finished run and a
progress line for the grid. SIGTERM / SIGINT stop the runs in progress after their batch (they keep their
finished epochs), start no further run, and end with `RunInterrupted`.

A run's result does not depend on the executor as long as its torch thread count does not (float reductions
can differ between thread counts; pin ``num_threads`` to compare).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pepx.errors import RunError, RunInterrupted
from pepx.experiments.executors import Executor, LocalExecutor, Task, threads_per_job
from pepx.fileio import write_text
from pepx.training.layout import RunLayout

__all__ = ["Job", "has_started", "is_complete", "run_jobs", "threads_per_job"]

#: Seconds between two looks at the runs in progress (and at a stop signal).
POLL_S = 1.0
#: Seconds the stopped runs get to finish their batch before they are killed (a second signal: at once).
STOP_GRACE_S = 60.0


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


def run_jobs(jobs: Sequence[Job], timings_file: Path, n_jobs: int = 1, log: Callable[[str], None] = print,
             executor: Executor | None = None, log_dir: Path | None = None, retries: int = 2) -> None:
    """Train every job that is not complete on ``executor`` (default: this machine, ``n_jobs`` at a time);
    ``log_dir``: the engine's per-run logs (default: ``logs/`` beside ``timings_file``)."""
    own = executor is None
    executor = LocalExecutor(n_jobs) if executor is None else executor
    try:
        _Grid(jobs, timings_file, executor.open(), log, Path(log_dir or timings_file.parent / "logs"),
              retries).run()
    finally:
        if own:
            executor.close()


class _Grid:
    """One call of `run_jobs`: its queue, the runs in progress, the log and the timings file."""

    def __init__(self, jobs: Sequence[Job], timings_file: Path, executor: Executor,
                 log: Callable[[str], None], log_dir: Path, retries: int) -> None:
        self.jobs, self.timings_file, self.executor, self.log = jobs, timings_file, executor, log
        self.retries = retries
        self.timings: dict[str, float] = json.loads(timings_file.read_text()) if timings_file.exists() else {}
        self.queue: deque[tuple[int, Job, int]] = deque()
        for i, job in enumerate(jobs, 1):
            if is_complete(job.folder, int(job.config["epochs"])):
                log(f"{self.tag(i)} {job.name}: complete, skipped")
            else:
                self.queue.append((i, job, 0))
        self.skipped = len(jobs) - len(self.queue)
        self.tasks = {job.name: Task(job.name, {**job.config, "num_threads": executor.threads(
            job.config.get("num_threads"))}, str(job.folder.resolve()), str(log_dir.resolve()))
            for _, job, _ in self.queue}
        self.running: dict[Any, tuple[int, Job, int]] = {}
        self.finished, self.unfinished = 0, []
        self.start = time.perf_counter()

    def tag(self, i: int) -> str:
        return f"[{i}/{len(self.jobs)}]"

    def run(self) -> None:
        if not self.queue:
            return
        self.log(f"grid: {len(self.queue)} of {len(self.jobs)} runs to train on {self.executor.describe()}")
        with _StopSignals(enabled=not self.executor.in_process) as stop:
            try:
                self._loop(stop)
            finally:  # a signal or an error: no run of this grid goes on training
                self._drain(stop)
        if stop.signum:
            name = signal.Signals(stop.signum).name
            out = self.timings_file.parent
            raise RunInterrupted(str(out), stop.signum, f"interrupted by {name}: {out}: the runs in progress "
                                 "stopped after their batch and keep their finished epochs; run the same "
                                 "command again to continue")
        if self.unfinished:
            raise RunError(f"{self.timings_file.parent}: {len(self.unfinished)} run(s) did not finish "
                           f"({', '.join(self.unfinished)}); run the same command again to resume them")

    def _loop(self, stop: _StopSignals) -> None:
        slots = self.executor.slots
        while (self.queue or self.running) and not stop.signum:
            while self.queue and (slots is None or len(self.running) < slots):
                i, job, attempt = self.queue.popleft()
                verb = "resuming" if has_started(job.folder) else "training"
                threads = self.tasks[job.name].config["num_threads"] or "default"
                self.log(f"{self.tag(i)} {job.name}: {verb} ({threads} threads) ...")
                self.running[self.executor.submit(self.tasks[job.name])] = (i, job, attempt)
            for handle, outcome in self.executor.wait(list(self.running), timeout=POLL_S):
                i, job, attempt = self.running.pop(handle)
                if outcome.seconds is not None:
                    self._finished(i, job, outcome.seconds)
                elif outcome.stopped:  # by someone else (a scheduler's pre-emption, scancel)
                    self.log(f"{self.tag(i)} {job.name}: stopped (resumes on the next call)")
                    self.unfinished.append(job.name)
                elif outcome.lost and attempt < self.retries:
                    self.log(f"{self.tag(i)} {job.name}: worker lost ({outcome.lost}); starting it again")
                    self.queue.appendleft((i, job, attempt + 1))
                elif outcome.lost:
                    self.log(f"{self.tag(i)} {job.name}: worker lost {attempt + 1} times ({outcome.lost})")
                    self.unfinished.append(job.name)
                else:
                    raise outcome.error or RunError(f"{job.name}: ended without a result")

    def _finished(self, i: int, job: Job, seconds: float) -> None:
        self.timings[job.name] = self.timings.get(job.name, 0.0) + seconds
        write_text(self.timings_file, json.dumps(self.timings, indent=1))
        self.finished += 1
        self.log(f"{self.tag(i)} {job.name}: done in {self.timings[job.name]:.1f} s")
        elapsed = (time.perf_counter() - self.start) / 60
        self.log(f"grid: {self.skipped + self.finished}/{len(self.jobs)} runs complete, {len(self.running)} "
                 f"running, {len(self.queue)} waiting ({elapsed:.1f} min)")

    def _drain(self, stop: _StopSignals) -> None:
        """Stop the runs in progress after their batch and wait until they have ended; kill them after
        `STOP_GRACE_S`, or at once on a further signal."""
        if not self.running:
            return
        self.executor.stop(list(self.running), force=False)
        told, deadline = stop.count, time.monotonic() + STOP_GRACE_S
        while self.running:
            if stop.count > told or time.monotonic() > deadline:
                told, deadline = stop.count, float("inf")
                self.executor.stop(list(self.running), force=True)
            for handle, outcome in self.executor.wait(list(self.running), timeout=POLL_S):
                i, job, _ = self.running.pop(handle)
                if outcome.seconds is not None:  # it finished its last batch meanwhile
                    self._finished(i, job, outcome.seconds)
                else:
                    self.log(f"{self.tag(i)} {job.name}: stopped (resumes on the next call)")


class _StopSignals:
    """While the grid runs, SIGTERM / SIGINT to this process set ``signum`` (the first) and ``count``; the
    grid then starts no further run and stops the runs in progress (`Executor.stop`; forced on a second).
    Without it, the default SIGTERM kills only this process and leaves its workers training. Not ``enabled``
    for an executor training in this process: the run's own handler stops it (`pepx.training.signals`)."""

    def __init__(self, enabled: bool = True) -> None:
        self.signum: int | None = None
        self.count = 0
        self.enabled = enabled
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        self.count += 1

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
