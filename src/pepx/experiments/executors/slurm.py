"""`slurm`: each run of the grid one SLURM job, submitted through submitit (``pip install 'pepx[slurm]'``,
imported only when ``--executor slurm`` is chosen), asking for ``cpus_per_run`` CPUs (its torch threads),
``gpus_per_run`` GPUs, a ``partition``, a time limit and any further ``sbatch`` option.

The grid stays in the calling process (a login node, or a small job of its own) and waits for the jobs; their
logs go to ``OUT/logs/<run>/``. A job that reaches its time limit or is pre-empted is requeued by submitit
(`submitit.helpers.Checkpointable`) and resumes after its last finished epoch; SLURM's ``scancel`` (the grid's
stop) sends SIGTERM, after which the run stops at its batch end. The compute nodes must see the data, the
output folder and this Python environment at the same paths (shared storage). ``cluster="local"`` runs the
jobs as local processes with submitit's own `LocalExecutor` (tests, trying a grid without SLURM).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.helpers import Checkpointable

from pepx.errors import ConfigError, RunError
from pepx.experiments.executors.base import Executor, Outcome, Task, train_run

#: A job's time limit when none is given (submitit's own defaults: 5 minutes on SLURM, 2 locally); a run
#: that needs longer is requeued at the limit and resumes.
DEFAULT_TIME_MIN = 240
#: Seconds between two looks at the jobs' states (submitit caches sacct's answers for longer on SLURM).
POLL_S = 0.5


class TrainRun(Checkpointable):
    """`train_run` as a submitit callable that can be requeued: the requeued job resumes from the folder."""

    def __call__(self, config: dict[str, Any], folder: str) -> float | None:
        return train_run(config, folder)


class SlurmExecutor(Executor):
    """SLURM jobs through submitit.

    Args:
        jobs: the most jobs queued or running at once (None: every run at once; SLURM schedules them).
        partition: the partition (None: the cluster's default).
        time_min: each job's time limit in minutes (default 240; a longer run is requeued and resumes).
        cpus_per_run: CPUs per job (``--cpus-per-task``); also the run's torch threads (capped by the
            profile's).
        gpus_per_run: GPUs per job (``--gpus-per-node``).
        sbatch: further ``sbatch`` options, e.g. ``{"account": "lab", "mem": "32G", "qos": "high"}``.
        cluster: ``"slurm"``, or ``"local"`` for submitit's local executor (no SLURM needed).
    """

    name = "slurm"

    def __init__(self, jobs: int | None = None, partition: str | None = None, time_min: int | None = None,
                 cpus_per_run: int = 1, gpus_per_run: int = 0, sbatch: dict[str, str] | None = None,
                 cluster: str = "slurm") -> None:
        super().__init__(jobs)
        if cluster not in ("slurm", "local"):
            raise ConfigError(f"cluster {cluster!r}: choose slurm or local")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm: no `sbatch` on PATH (run the grid on a SLURM login node, or "
                              "use --executor local or ray)")
        self.cluster, self.cpus, self.gpus = cluster, cpus_per_run, gpus_per_run
        self.parameters: dict[str, Any] = {
            "timeout_min": time_min or DEFAULT_TIME_MIN,
            "cpus_per_task": cpus_per_run, "gpus_per_node": gpus_per_run or None,
            "slurm_partition": partition, "slurm_additional_parameters": dict(sbatch or {}) or None}
        self._stopped: set[str] = set()

    def describe(self) -> str:
        where = "submitit's local executor" if self.cluster == "local" else (
            f"partition {self.parameters['slurm_partition']}" if self.parameters["slurm_partition"]
            else "default partition")
        gpus = f", {self.gpus} GPU" if self.gpus else ""
        return f"slurm ({where}; {self.cpus} CPU{'s' * (self.cpus != 1)}{gpus} a job)"

    def threads(self, requested: int | None) -> int | None:
        return self.cpus if requested is None else min(requested, self.cpus)

    def submit(self, task: Task) -> Any:
        executor = submitit.AutoExecutor(folder=Path(task.log_dir) / task.name, cluster=self.cluster)
        executor.update_parameters(name=f"pepx-{task.name}", **self.parameters)
        try:
            return executor.submit(TrainRun(), task.config, task.folder)
        except Exception as err:  # noqa: BLE001 - sbatch refused the job (a bad partition, account, ...)
            reason = " ".join(str(err).split())[-300:]
            raise ConfigError(f"--executor slurm: sbatch refused run {task.name}: {reason}") from None

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, Outcome]]:
        deadline = time.monotonic() + timeout
        while True:
            done = [job for job in handles if job.done()]
            if done or time.monotonic() >= deadline:
                return [(job, self._outcome(job)) for job in done]
            time.sleep(POLL_S)

    def stop(self, handles: Sequence[Any], force: bool = False) -> None:
        for job in handles:  # scancel: SIGTERM (the run stops after its batch), SIGKILL after KillWait
            if job.job_id not in self._stopped or force:
                self._stopped.add(job.job_id)
                job.cancel(check=False)

    def _outcome(self, job: Any) -> Outcome:
        try:
            seconds = job.result()
        except FailedJobError as err:  # the run raised: its last line, and where the whole log is
            last = [line for line in str(err).splitlines() if line.strip()]
            return Outcome(error=RunError(f"SLURM job {job.job_id} failed: {last[-1] if last else err} "
                                          f"(log: {job.paths.stderr})"))
        except UncompletedJobError as err:
            if job.job_id in self._stopped:
                return Outcome(stopped=True)
            return Outcome(lost=f"SLURM job {job.job_id} ended without a result ({job.state}; "
                                f"log: {job.paths.stderr}); {str(err).splitlines()[0][:120]}")
        return Outcome(seconds=seconds) if seconds is not None else Outcome(stopped=True)
