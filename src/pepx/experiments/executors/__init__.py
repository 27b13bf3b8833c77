"""Where the runs of a grid train: ``local`` (this machine, the default), ``ray`` (Ray tasks) or ``slurm``
(SLURM jobs through submitit). `make_executor` picks one by name; Ray and submitit are optional extras
(``pip install 'pepx[ray]'`` / ``'pepx[slurm]'``), imported only when chosen. The grid itself
(`pepx.experiments.parallel.run_jobs`) does not know which engine runs a job (`base.Executor`).
"""

from __future__ import annotations

import importlib
from typing import Any

from pepx.errors import ConfigError
from pepx.experiments.executors.base import Executor, Outcome, Task, train_run
from pepx.experiments.executors.local import LocalExecutor, threads_per_job

#: name -> (module, class, the pip extra that installs its engine, the options it takes besides ``jobs``).
EXECUTORS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "local": ("local", "LocalExecutor", "", ()),
    "ray": ("ray", "RayExecutor", "ray", ("address", "cpus_per_run", "gpus_per_run", "num_cpus")),
    "slurm": ("slurm", "SlurmExecutor", "slurm",
              ("partition", "time_min", "cpus_per_run", "gpus_per_run", "sbatch", "cluster")),
}


def make_executor(name: str = "local", jobs: int | None = None, **options: Any) -> Executor:
    """The executor ``name`` with ``options`` (None = unset); `ConfigError` for an unknown name, an option
    the executor does not take (named as its ``--flag``), or an engine that is not installed. Nothing is
    started: `Executor.open` connects."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name}: choose among {', '.join(EXECUTORS)}")
    module, cls, extra, takes = EXECUTORS[name]
    given = {k: v for k, v in options.items() if v is not None}
    foreign = [k for k in given if k not in takes]
    if foreign:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in foreign)
        raise ConfigError(f"{flags}: not an option of --executor {name}")
    try:
        mod = importlib.import_module(f"{__name__}.{module}")
    except ImportError as err:
        raise ConfigError(f"--executor {name} needs {err.name or extra}, which is not installed: "
                          f"pip install 'pepx[{extra}]'") from None
    return getattr(mod, cls)(jobs=jobs, **given)


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "Outcome", "Task", "make_executor", "threads_per_job",
           "train_run"]
