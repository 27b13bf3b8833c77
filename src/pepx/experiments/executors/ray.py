"""`ray`: each run of the grid a Ray task asking for ``cpus_per_run`` CPUs (its torch threads) and
``gpus_per_run`` GPUs, on a local Ray cluster started for the grid (the default) or an existing one
(``address``: ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``). Ray places the tasks; ``jobs`` caps how many
run at once (default: as many as the cluster holds). Imported only when ``--executor ray`` is chosen
(``pip install 'pepx[ray]'``).

Every node must have pepx installed and see the data and the output folder at the same paths (shared
storage). Training output of the workers goes to Ray's logs (``/tmp/ray/session_latest/logs`` on each node),
not to the grid's stdout. A stop is Ray's task cancel, which raises SIGINT's handler in the worker: the run
stops after its batch and keeps its finished epochs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any

import ray
from ray import exceptions as rex

from pepx.errors import ConfigError, PepxError
from pepx.experiments.executors.base import Executor, Outcome, Task, train_run

#: Ray's errors that mean the worker (or its node) went away, not that the run failed: the run is retried.
LOST = (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError, rex.OwnerDiedError,
        rex.ObjectLostError, rex.OutOfMemoryError, rex.RaySystemError)
#: Object store of a local cluster: the grid passes only small configs and wall times through it.
LOCAL_OBJECT_STORE = 256 * 2**20
#: Ray starts its workers at nice 15 so its own daemons stay responsive; on a machine shared with other work
#: that starves the runs (about 50x slower epochs measured beside two busy trainings). A local cluster's
#: workers get the priority the `local` executor's processes have; an existing cluster keeps its own setting.
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """`ConfigError` when nothing answers at ``HOST:PORT`` (or ``ray://HOST:PORT``): fails in seconds where
    ``ray.init`` would wait for minutes. ``auto`` is left to Ray."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConfigError(f"--address {address}: no Ray cluster answers there "
                          f"({err.strerror or type(err).__name__})") from None


class RayExecutor(Executor):
    """Ray tasks.

    Args:
        jobs: the most runs at once (None: as many as the cluster's resources allow).
        address: an existing cluster (None: ``$RAY_ADDRESS`` when set, as in a Ray job; else start a local
            cluster for the grid, shut down by `close`).
        cpus_per_run: CPUs each task asks for; also its torch threads (capped by the profile's).
        gpus_per_run: GPUs each task asks for (0: CPU training).
        num_cpus: CPUs of the local cluster (None: all of this machine's); only without ``address``.
    """

    name = "ray"

    def __init__(self, jobs: int | None = None, address: str | None = None, cpus_per_run: int = 1,
                 gpus_per_run: float = 0, num_cpus: int | None = None) -> None:
        super().__init__(jobs)
        address = address or os.environ.get("RAY_ADDRESS") or None  # set for the driver of a Ray job
        if address is not None and num_cpus is not None:
            raise ConfigError("num_cpus sizes a local Ray cluster: not with --address")
        self.address, self.cpus, self.gpus, self.num_cpus = address, cpus_per_run, gpus_per_run, num_cpus
        self._started = False
        self._remote = ray.remote(train_run)

    def open(self) -> RayExecutor:
        if not ray.is_initialized():
            self._init()
        self._check_resources()
        return self

    def _init(self) -> None:
        if self.address:
            check_reachable(self.address)
        main = threading.current_thread() is threading.main_thread()
        saved = signal.getsignal(signal.SIGTERM) if main else None
        try:
            ray.init(address=self.address, num_cpus=self.num_cpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR,
                     object_store_memory=None if self.address else LOCAL_OBJECT_STORE,
                     _system_config=None if self.address else LOCAL_SYSTEM_CONFIG)
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = f"--address {self.address}" if self.address else "a local Ray cluster"
            reason = " ".join(str(err).split()) or type(err).__name__
            raise ConfigError(f"{where}: cannot connect ({reason})") from None
        finally:
            if saved is not None:  # ray.init makes SIGTERM a silent exit; the grid handles it itself
                signal.signal(signal.SIGTERM, saved)
        self._started = not self.address

    def _check_resources(self) -> None:
        """A run no node of a local cluster can hold would wait forever (a remote one may scale up)."""
        if self.address:
            return
        have = ray.cluster_resources()
        for what, need in (("CPU", self.cpus), ("GPU", self.gpus)):
            if need and have.get(what, 0) < need:
                self.close()
                flag = f"--{what.lower()}s-per-run {need:g}"
                raise ConfigError(f"{flag}: the Ray cluster has {have.get(what, 0):g} {what}s in all, so "
                                  "no run could ever start")

    def close(self) -> None:
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False

    def describe(self) -> str:
        where = self.address or "local cluster"
        cpus = ray.cluster_resources().get("CPU", 0) if ray.is_initialized() else 0
        return f"ray ({where}, {cpus:g} CPUs; {self.cpus} CPU{'s' * (self.cpus != 1)}" + (
            f", {self.gpus:g} GPU a run)" if self.gpus else " a run)")

    def threads(self, requested: int | None) -> int | None:
        return self.cpus if requested is None else min(requested, self.cpus)

    def submit(self, task: Task) -> Any:
        return self._remote.options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0,
                                    name=f"pepx:{task.name}").remote(task.config, task.folder)

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, Outcome]]:
        ready, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
        if ready:  # and whatever else has ended by now
            ready, _ = ray.wait(list(handles), num_returns=len(handles), timeout=0)
        return [(ref, _outcome(ref)) for ref in ready]

    def stop(self, handles: Sequence[Any], force: bool = False) -> None:
        for ref in handles:
            ray.cancel(ref, force=force)  # not forced: SIGINT's handler, pepx's, stops after the batch


def _outcome(ref: Any) -> Outcome:
    try:
        seconds = ray.get(ref)
    except rex.TaskCancelledError:
        return Outcome(stopped=True)
    except LOST as err:
        return Outcome(lost=_first_line(err))
    except rex.RayTaskError as err:  # the run raised: pass pepx's own error on as itself
        cause = getattr(err, "cause", None)
        if isinstance(cause, KeyboardInterrupt):
            return Outcome(stopped=True)
        return Outcome(error=cause if isinstance(cause, PepxError) else err)
    return Outcome(seconds=seconds) if seconds is not None else Outcome(stopped=True)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
