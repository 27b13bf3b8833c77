"""The grid on every executor: `local`, a real local Ray cluster (2 CPUs) and submitit's local executor train
the same tiny grid to the same report; a worker killed mid-run resumes; SIGTERM stops Ray's workers; bad
executor settings are one line and write nothing; the grid's retry rules on a scripted executor."""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pepx.cli import main
from pepx.errors import ConfigError, RunError, RunInterrupted
from pepx.experiments import get_profile
from pepx.experiments.cv import reproduce_cv
from pepx.experiments.executors import Executor, Outcome, Task, make_executor
from pepx.experiments.parallel import Job, run_jobs

SYNTH = "synthetic:n_per_class=24,size=64"
SLOW_SYNTH = "synthetic:n_per_class=60,size=64"  # epochs long enough to act between two of them


def _profile(data: str = SYNTH, epochs: int = 1, models: tuple[str, ...] = ("pepx_resnet", "resnet18")):
    return get_profile("smoke", data=data, epochs=epochs, seeds=1, models=list(models), losses=["focal"])


def _without_times(text: str) -> str:
    """A report without its wall times (the only lines that may differ between executors) and its git commit
    (a commit made while the suite runs changes it between the two grids)."""
    return "\n".join(line for line in text.splitlines()
                     if "Wall time" not in line and "wall times" not in line
                     and not line.startswith("| git |")
                     and not re.fullmatch(r"\| [\w.-]+ \| [\d.]+ \|", line))


def assert_same_grid(a: Path, b: Path) -> None:
    """Every table, pooled prediction and run prediction identical; the reports identical but for times."""
    files = sorted(p.relative_to(a) for p in a.rglob("*.csv") if "logs" not in p.parts)
    assert len([f for f in files if f.parts[0] == "runs"]) == 4 * 3  # split, metrics, predictions a run
    for rel in files:
        if rel.name == "metrics.csv":  # per-epoch wall times and speeds differ; the scores may not
            left, right = pd.read_csv(a / rel), pd.read_csv(b / rel)
            timed = ["epoch_seconds", "images_per_second"]
            pd.testing.assert_frame_equal(left.drop(columns=timed), right.drop(columns=timed),
                                          check_exact=True)
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert _without_times((a / "report.md").read_text()) == _without_times((b / "report.md").read_text())


def _grid(out: Path, executor: Executor | None, logs: list[str] | None = None, **profile) -> Path:
    return reproduce_cv(_profile(**profile), out, 3, folds=[0, 1], executor=executor,
                        log=(logs.append if logs is not None else lambda _: None))


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny grid (2 folds x 2 networks, 1 epoch, 1 thread a run) on the local executor."""
    out = tmp_path_factory.mktemp("local") / "grid"
    _grid(out, None)
    return out


def _processes(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (from /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in text and state != "Z" and int(cmdline.parent.name) != os.getpid():
            found.append(int(cmdline.parent.name))
    return found


def _when_checkpointed(out: Path, act: Callable[[], None]) -> threading.Thread:
    """A thread that runs ``act`` once the first epoch checkpoint of a run under ``out`` exists."""
    def watch() -> None:
        deadline = time.monotonic() + 1200  # a loaded machine starts workers slowly
        while time.monotonic() < deadline and not list((out / "runs").glob("*/checkpoints/last.ckpt")):
            time.sleep(0.02)
        act()
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _kill_worker(marker: str, killed: list[float]) -> Callable[[], None]:
    def act() -> None:
        pids = _processes(marker)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed.append(time.time() if pids else float("nan"))
    return act


def _assert_resumed(run: Path, killed_at: float, epochs: int) -> None:
    """The run finished all epochs, and its first epoch's weights are from before the kill (not retrained)."""
    assert (run / "model.safetensors").exists()
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == list(range(1, epochs + 1))
    assert (run / "weights" / "epoch_001.safetensors").stat().st_mtime < killed_at
    assert (run / "weights" / f"epoch_{epochs:03d}.safetensors").stat().st_mtime > killed_at


# ---------------------------------------------------------------------- bad settings
def _refused(argv: list[str], tmp_path: Path, capsys, expected: str) -> None:
    out = tmp_path / "never"
    assert main(["reproduce", "--cv", "3", "--data", SYNTH, "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("executor, package", [("ray", "ray"), ("slurm", "submitit")])
def test_executor_without_its_package_is_one_line(executor, package, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if it were not installed
    monkeypatch.delitem(sys.modules, f"pepx.experiments.executors.{executor}", raising=False)
    _refused(["--executor", executor], tmp_path, capsys, f"pip install 'pepx[{executor}]'")


def test_unreachable_ray_address_and_foreign_options_are_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    _refused(["--executor", "ray", "--address", "127.0.0.1:1"], tmp_path, capsys,
             "--address 127.0.0.1:1: no Ray cluster answers there")
    _refused(["--executor", "ray", "--address", "nowhere"], tmp_path, capsys, "expected auto, HOST:PORT")
    _refused(["--executor", "local", "--partition", "gpu"], tmp_path, capsys,
             "--partition: not an option of --executor local")


def test_recipe_refuses_a_bad_executor_before_writing(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "never"
    assert main(["recipe", "--cv", "3", "--epochs", "1", "--out", str(out),
                 "--executor", "ray", "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "--address 127.0.0.1:1: no Ray cluster answers there" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_slurm_without_sbatch_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    _refused(["--executor", "slurm", "--partition", "gpu"], tmp_path, capsys, "no `sbatch` on PATH")


# ---------------------------------------------------------------------- the grid's rules, scripted
class Scripted(Executor):
    """Ends each task with the next outcome scripted for its name (no training)."""

    name = "scripted"

    def __init__(self, script: dict[str, list[Outcome]]) -> None:
        super().__init__(slots=None)
        self.script, self.submitted = script, []

    def describe(self) -> str:
        return "scripted"

    def threads(self, requested: int | None) -> int | None:
        return 3

    def submit(self, task: Task) -> str:
        self.submitted.append(task)
        return f"{task.name}#{len(self.submitted)}"

    def wait(self, handles, timeout):
        return [(h, self.script[h.split("#")[0]].pop(0)) for h in handles]

    def stop(self, handles, force=False) -> None:
        raise AssertionError("nothing to stop")


def test_lost_workers_are_retried_then_reported_and_errors_raised(tmp_path):
    jobs = [Job(name, {"epochs": 1, "num_threads": None}, tmp_path / name) for name in ("a", "b", "c")]
    lost = Outcome(lost="node gone")
    executor = Scripted({"a": [lost, Outcome(seconds=2.0)], "b": [lost, lost, lost],
                         "c": [Outcome(seconds=1.0)]})
    logs: list[str] = []
    with pytest.raises(RunError, match=r"1 run\(s\) did not finish \(b\)"):
        run_jobs(jobs, tmp_path / "timings.json", executor=executor, log=logs.append, retries=2)
    names = [t.name for t in executor.submitted]
    assert names.count("a") == 2 and names.count("b") == 3 and names.count("c") == 1
    assert all(t.config["num_threads"] == 3 and Path(t.folder).is_absolute() for t in executor.submitted)
    assert sum("starting it again" in line for line in logs) == 3
    assert any("b: worker lost 3 times" in line for line in logs)
    assert any(line.startswith("grid: 2/3 runs complete") for line in logs)
    assert (tmp_path / "timings.json").read_text().count(":") == 2  # a and c recorded, b not
    with pytest.raises(ConfigError, match="bad config"):
        run_jobs(jobs[:1], tmp_path / "t2.json",
                 executor=Scripted({"a": [Outcome(error=ConfigError("bad config"))]}))


def _kill_mid_run_and_resume(out: Path, executor, kill: Callable[[], None], killed: list[float],
                             lost: str) -> None:
    """A 3-epoch grid run whose worker `kill` kills once its first checkpoint exists: the grid reports it lost
    (`lost` in the log), restarts it, and it resumes from that checkpoint."""
    logs: list[str] = []
    watcher = _when_checkpointed(out, kill)
    reproduce_cv(_profile(SLOW_SYNTH, epochs=3, models=("resnet18",)), out, 3, folds=[0], executor=executor,
                 log=logs.append)
    watcher.join()
    assert killed and math.isfinite(killed[0]), "no worker was found to kill"
    assert any(f"worker lost ({lost}" in line for line in logs), logs
    assert any("resuming" in line for line in logs), logs
    _assert_resumed(out / "runs" / "resnet18-focal-seed0-fold0", killed[0], epochs=3)


# ---------------------------------------------------------------------- local pool
@pytest.mark.slow
def test_local_worker_killed_mid_run_resumes(tmp_path):
    import multiprocessing

    killed: list[float] = []

    def kill_own_workers() -> None:  # only this process's pool workers (other work may run here too)
        children = multiprocessing.active_children()
        for child in children:
            child.kill()
        killed.append(time.time() if children else float("nan"))

    with make_executor("local", jobs=2) as executor:
        _kill_mid_run_and_resume(tmp_path / "g", executor, kill_own_workers, killed,
                                 "its worker process died")


# ---------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    executor = make_executor("ray", num_cpus=2).open()  # a real local cluster of 2 CPUs
    yield executor
    executor.close()


@pytest.mark.slow
def test_ray_workers_train_at_this_process_priority(ray_executor):
    import ray  # Ray's default nice 15 starved the runs ~50x beside other work on this machine

    niceness = ray.remote(lambda: os.nice(0))  # a lambda travels by value: this module is not on the workers
    assert ray.get(niceness.options(num_cpus=1).remote()) == os.nice(0)


@pytest.mark.slow
def test_ray_refuses_runs_no_node_can_hold(ray_executor):
    with pytest.raises(ConfigError, match="--gpus-per-run 64: the Ray cluster has 0 GPUs"):
        make_executor("ray", gpus_per_run=64).open()


@pytest.mark.slow
def test_ray_grid_gives_the_local_report(ray_executor, local_grid, tmp_path):
    logs: list[str] = []
    _grid(tmp_path / "ray", ray_executor, logs)
    assert "grid: 4 of 4 runs to train on ray (local cluster, 2 CPUs; 1 CPU a run)" in logs
    assert sum(" done in " in line for line in logs) == 4
    assert len(pd.read_json(tmp_path / "ray" / "timings.json", typ="series")) == 4
    assert_same_grid(local_grid, tmp_path / "ray")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_ray_worker_killed_mid_run_resumes(ray_executor, tmp_path):
    killed: list[float] = []
    _kill_mid_run_and_resume(tmp_path / "g", ray_executor, _kill_worker("ray::pepx:", killed), killed,
                             "WorkerCrashedError")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_sigterm_stops_the_ray_workers_and_the_grid_resumes(ray_executor, tmp_path):
    out = tmp_path / "g"
    profile = _profile(SLOW_SYNTH, epochs=4)
    watcher = _when_checkpointed(out, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(RunInterrupted, match="interrupted by SIGTERM") as stopped:
        reproduce_cv(profile, out, 3, folds=[0], executor=ray_executor, log=lambda _: None)
    watcher.join()
    assert stopped.value.exit_status == 143
    deadline = time.monotonic() + 30
    while _processes("ray::pepx:") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes("ray::pepx:"), "Ray workers still training after the grid was stopped"
    runs = sorted((out / "runs").iterdir())  # the second run may not have started yet
    assert not any((r / "model.safetensors").exists() for r in runs)
    assert any((r / "checkpoints" / "last.ckpt").exists() for r in runs)
    logs: list[str] = []
    reproduce_cv(profile, out, 3, folds=[0], executor=ray_executor, log=logs.append)
    assert any("resuming" in line for line in logs) and (out / "report.md").exists()


# ---------------------------------------------------------------------- SLURM through submitit
@pytest.mark.slow
def test_submitit_grid_gives_the_local_report(local_grid, tmp_path):
    pytest.importorskip("submitit")
    with make_executor("slurm", jobs=2, cluster="local") as executor:
        _grid(tmp_path / "slurm", executor)
    assert_same_grid(local_grid, tmp_path / "slurm")
    assert len(list((tmp_path / "slurm" / "logs").glob("*/*_0_log.out"))) == 4  # one job a run


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_submitit_job_killed_mid_run_resumes(tmp_path):
    pytest.importorskip("submitit")
    out, killed = tmp_path / "g", []
    with make_executor("slurm", cluster="local") as executor:
        _kill_mid_run_and_resume(out, executor, _kill_worker(f"submitit.core._submit {out / 'logs'}", killed),
                                 killed, "SLURM job")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_sigterm_cancels_the_submitit_jobs_and_the_grid_resumes(tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "g"
    profile = _profile(SLOW_SYNTH, epochs=4)
    watcher = _when_checkpointed(out, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with make_executor("slurm", cluster="local") as executor:
        with pytest.raises(RunInterrupted, match="interrupted by SIGTERM") as stopped:
            reproduce_cv(profile, out, 3, folds=[0], executor=executor, log=lambda _: None)
    watcher.join()
    assert stopped.value.exit_status == 143
    marker = f"submitit.core._submit {out / 'logs'}"
    deadline = time.monotonic() + 30
    while _processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes(marker), "submitit jobs still training after the grid was stopped"
    runs = sorted((out / "runs").iterdir())
    assert not any((r / "model.safetensors").exists() for r in runs)
    assert any((r / "checkpoints" / "last.ckpt").exists() for r in runs)
    logs: list[str] = []
    with make_executor("slurm", cluster="local") as executor:
        reproduce_cv(profile, out, 3, folds=[0], executor=executor, log=logs.append)
    assert any("resuming" in line for line in logs) and (out / "report.md").exists()
