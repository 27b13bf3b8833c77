"""The runs of a grid - {models} x {losses} x seeds, per CV fold, ablation or held-out source - and folders.

Layout of an output folder: ``grid.json`` (the settings, so a second call with other settings is refused
instead of mixing runs), ``timings.json`` (wall seconds per run), the split file(s) (``split.csv`` for the
single split; ``folds.csv`` and ``splits/`` for `pepx reproduce --cv`), ``runs/<name>/`` (training's run
folders) and, on SLURM, ``logs/<name>/`` (the jobs' logs). Complete runs are skipped and interrupted ones
resumed (`pepx.experiments.parallel`), so a killed `pepx reproduce` continues. This module is the one place
that names run folders and grid files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pepx.data import balanced_split, load_source, load_split, save_split
from pepx.errors import ConfigError, RunError
from pepx.evaluation.breakdown import fill_columns, missing_columns
from pepx.experiments.executors import Executor
from pepx.experiments.parallel import Job, is_complete, run_jobs
from pepx.experiments.profiles import Profile
from pepx.fileio import write_text
from pepx.training.layout import RunLayout

SPLIT_FILE, GRID_FILE, TIMINGS_FILE, RUNS_DIR = "split.csv", "grid.json", "timings.json", "runs"
#: `pepx reproduce --cv`: the fold assignment, the runs' split files, the pooled predictions of a report, and
#: the report of ``--inner-val``.
FOLDS_FILE, SPLITS_DIR, POOLED_DIR, INNER_DIR = "folds.csv", "splits", "pooled", "inner-val"
#: Per-run logs of an engine that keeps them (SLURM: ``logs/<run>/<job id>_0_log.out``).
LOGS_DIR = "logs"
#: Profile fields that may change between calls on one folder (they add or drop runs, not change them).
FREE_SETTINGS = ("seeds", "models", "losses", "n_boot")


@dataclass(frozen=True)
class GridRun:
    """One training run: a cell (model, loss), a seed, and where it sits in the protocol.

    ``fold``: the CV fold it is tested on (None: the single split); ``variant``: an ablation of the model
    (a key of `profiles.ABLATIONS`, "" = the default); ``held_out``: the source it never sees
    (leave-source-out, "" = none); ``inner``: scored on the inner validation fold instead of the test fold.
    """

    model: str
    loss: str
    seed: int
    fold: int | None = None
    variant: str = ""
    held_out: str = ""
    inner: bool = False

    @property
    def cell(self) -> str:
        """``model+loss``: the grid cell (a row of Tables 1-4), shared by its seeds and folds."""
        return f"{self.model}+{self.loss}"

    @property
    def name(self) -> str:
        parts = [f"{self.model}-{self.loss}-seed{self.seed}"]
        parts += [f"fold{self.fold}"] if self.fold is not None else []
        parts += [self.variant] if self.variant else []
        parts += [f"without-{self.held_out}"] if self.held_out else []
        parts += ["inner"] if self.inner else []
        return "-".join(parts)


def plan(models: Sequence[str], losses: Sequence[str], seeds: Sequence[int],
         folds: Sequence[int | None] = (None,), **where: Any) -> list[GridRun]:
    """Every (model, loss, seed, fold), models outermost, in the order given; ``where``: further fields."""
    return [GridRun(m, l, s, f, **where) for m in models for l in losses for s in seeds for f in folds]


def run_dir(out: str | Path, run: GridRun) -> Path:
    return Path(out) / RUNS_DIR / run.name


def split_file(out: str | Path, fold: int | None, inner: bool = False, held_out: str = "") -> Path:
    """Where a CV run's split lies: ``splits/without-<source>.csv`` for a held-out source, else
    ``splits/fold<k>.csv`` (``fold<k>-inner.csv`` when scored on the inner validation fold)."""
    name = f"without-{held_out}.csv" if held_out else f"fold{fold}{'-inner' if inner else ''}.csv"
    return Path(out) / SPLITS_DIR / name


def read_timings(out: Path) -> dict[str, float]:
    """Wall seconds of each run of the grid in ``out`` (``timings.json``; empty when nothing trained)."""
    path = Path(out) / TIMINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def read_predictions(folder: Path) -> pd.DataFrame:
    """A run's final test predictions (``predictions.csv``); a breakdown column they lack (``view`` in runs
    trained before predictions recorded it) is taken from the run's ``split.csv`` where that has it."""
    layout = RunLayout(folder)
    frame = pd.read_csv(layout.predictions)
    if missing_columns(frame) and layout.split.exists():
        frame = fill_columns(frame, load_split(layout.split))
    return frame


def read_metrics(folder: Path) -> pd.DataFrame:
    """A run's per-epoch metrics (``metrics.csv``)."""
    return pd.read_csv(RunLayout(folder).metrics)


def group(folders: dict[GridRun, Path], key: Callable[[GridRun], Hashable | None]
          ) -> dict[Hashable, dict[GridRun, Path]]:
    """Runs grouped by ``key(run)`` (runs whose key is None are left out), in the order given."""
    out: dict[Hashable, dict[GridRun, Path]] = {}
    for run, path in folders.items():
        k = key(run)
        if k is not None:
            out.setdefault(k, {})[run] = path
    return out


def pooled_predictions(folders: dict[GridRun, Path]) -> list[pd.DataFrame]:
    """One frame per seed: the runs' predictions concatenated over folds (with a ``fold`` column).

    Raises `RunError` when an image is predicted twice under one seed (folds that overlap).
    """
    by_seed: dict[int, list[pd.DataFrame]] = {}
    for run, path in sorted(folders.items(), key=lambda item: (item[0].seed, item[0].fold or 0)):
        by_seed.setdefault(run.seed, []).append(read_predictions(path).assign(fold=run.fold))
    pooled = [pd.concat(frames, ignore_index=True) for _, frames in sorted(by_seed.items())]
    for seed, frame in zip(sorted(by_seed), pooled, strict=True):
        twice = frame["path"][frame["path"].duplicated()]
        if len(twice):
            raise RunError(f"seed {seed}: {len(twice)} images are predicted by two folds "
                           f"(e.g. {twice.iloc[0]}): the runs do not come from one fold assignment")
    return pooled


def pooled_by(folders: dict[GridRun, Path], key: Callable[[GridRun], Hashable | None]
              ) -> dict[Hashable, list[pd.DataFrame]]:
    """The pooled predictions (`pooled_predictions`) of each group of runs that ``key`` makes (`group`)."""
    return {name: pooled_predictions(runs) for name, runs in group(folders, key).items()}


def fold_frames(folders: dict[GridRun, Path]) -> list[pd.DataFrame]:
    """The runs' per-epoch metrics, one frame per (seed, fold)."""
    return [read_metrics(path) for path in folders.values()]


def claim(out: Path, profile: Profile, **protocol: Any) -> None:
    """Create ``out`` and write its ``grid.json`` (the profile's settings but the free ones, and the
    ``protocol``'s) on the first call; refuse an ``out`` whose saved settings differ."""
    out.mkdir(parents=True, exist_ok=True)
    grid_file = out / GRID_FILE
    settings = json.loads(json.dumps(
        {**{k: v for k, v in profile.to_dict().items() if k not in FREE_SETTINGS}, **protocol}))
    if grid_file.exists():
        saved = json.loads(grid_file.read_text())
        if saved != settings:
            changed = sorted(k for k in set(settings) | set(saved) if saved.get(k) != settings.get(k))
            raise ConfigError(f"{out} holds a reproduce with other settings ({', '.join(changed)}): "
                              "use another --out, or the same settings to continue it")
    else:
        write_text(grid_file, json.dumps(settings, indent=1))


def prepare(profile: Profile, out: str | Path) -> Path:
    """Create ``out`` and its shared single split (refusing an ``out`` made with other settings)."""
    out = Path(out)
    claim(out, profile)
    split = out / SPLIT_FILE
    if not split.exists():
        manifest = load_source(profile.data).manifest
        frame = balanced_split(manifest, profile.n_train, profile.n_test, n_val=0, seed=profile.split_seed)
        save_split(frame, split)
    return split


def require_grid(out: Path) -> None:
    """`RunError` unless ``out`` holds a grid (``grid.json``): what ``--report-only`` reports on."""
    if not (Path(out) / GRID_FILE).is_file():
        raise RunError(f"{out}: no grid here ({GRID_FILE} not found): run it without --report-only first")


def train_runs(profile: Profile, out: Path, runs: Sequence[GridRun], split_of: Callable[[GridRun], Path],
               n_jobs: int = 1, log: Callable[[str], None] = print, executor: Executor | None = None,
               report_only: bool = False) -> dict[GridRun, Path]:
    """Train ``runs`` (each on the split file ``split_of(run)``) that are not complete, on ``executor``
    (default: this machine, ``n_jobs`` at a time); their folders. ``report_only``: train nothing, and refuse
    (`RunError`, nothing written) unless every run is complete."""
    if report_only:
        missing = [run.name for run in runs if not is_complete(run_dir(out, run), profile.epochs)]
        if missing:
            raise RunError(f"--report-only: {len(missing)} of {len(runs)} runs in {out} are not complete "
                           f"(e.g. {missing[0]}): run the grid without --report-only to train them")
        return {run: run_dir(out, run) for run in runs}
    jobs = [Job(run.name, profile.train_config(run.model, run.loss, run.seed, str(split_of(run).resolve()),
                                               variant=run.variant), run_dir(out, run))
            for run in runs]
    run_jobs(jobs, out / TIMINGS_FILE, n_jobs=n_jobs, log=log, executor=executor, log_dir=out / LOGS_DIR)
    return {run: run_dir(out, run) for run in runs}


def run_grid(profile: Profile, out: str | Path, seeds: Sequence[int], n_jobs: int = 1,
             log: Callable[[str], None] = print, executor: Executor | None = None,
             report_only: bool = False) -> dict[GridRun, Path]:
    """Train every run of the single-split grid that is not complete yet; returns each run's folder."""
    out = Path(out)
    if report_only:
        require_grid(out)
    elif executor is not None:
        executor.open()  # before anything is written: an engine that cannot be reached is refused first
    split = prepare(profile, out)
    runs = plan(profile.models, profile.losses, seeds)
    return train_runs(profile, out, runs, lambda _: split, n_jobs=n_jobs, log=log, executor=executor,
                      report_only=report_only)
