"""`pepx reproduce --cv K`: the grid on K patient-grouped folds, pooled out-of-fold predictions, and - on the
same folds - the ablations and leave-source-out; resumable, ``jobs`` runs at a time.

Output folder (besides the files of `pepx.experiments.grid`): ``folds.csv`` (every labelled image with its
fold, -1 = training only), ``splits/fold<k>.csv`` (and ``fold<k>-inner.csv``, ``without-<source>.csv``),
``pooled/<cell>.csv`` (the out-of-fold predictions of each cell, all folds and seeds), the tables, figures and
``report.md`` (`pepx.experiments.report_cv`). With ``inner_val`` the runs are scored on inner validation folds
and the report goes to ``inner-val/report.md``; the test folds are never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from pepx.data import load_source
from pepx.errors import ConfigError
from pepx.experiments.ablations import ablation_runs
from pepx.experiments.comparisons import HEADLINE
from pepx.experiments.executors import Executor
from pepx.experiments.external import LSO_MODELS, lso_runs, lso_sources, lso_split
from pepx.experiments.folds import add_pixel_hashes, assign_folds, fold_split
from pepx.experiments.grid import (
    GridRun,
    check_settings,
    plan,
    profile_settings,
    read_timings,
    require_grid,
    train_runs,
)
from pepx.experiments.mitigations import mitigation_runs
from pepx.experiments.profiles import Profile
from pepx.experiments.report_cv import write_cv_report
from pepx.fileio import write_csv

FOLDS_FILE, SPLITS_DIR, POOLED_DIR, INNER_DIR = "folds.csv", "splits", "pooled", "inner-val"


def prepare_cv(profile: Profile, out: Path, k: int, pseudo_test: bool = False) -> pd.DataFrame:
    """Create ``out`` with its fold assignment ``folds.csv`` (made once; an ``out`` made with other
    settings is refused) and return it."""
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, profile_settings(profile, cv=k, pseudo_test=pseudo_test))
    path = out / FOLDS_FILE
    if not path.exists():
        folded = add_pixel_hashes(assign_folds(load_source(profile.data).manifest, k, seed=profile.split_seed,
                                               pseudo_test=pseudo_test))
        write_csv(folded, path, index=False)
    return pd.read_csv(path, dtype={"patient_id": str, "label": str, "path": str})


def _write_once(path: Path, make: Callable[[], pd.DataFrame]) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_csv(make(), path, index=False)
    return path


def split_of(out: Path, folded: pd.DataFrame) -> Callable[[GridRun], Path]:
    """The split file of a run (written on first use): its fold's, inner fold's or held-out source's."""
    def split_file(run: GridRun) -> Path:
        if run.held_out:
            return _write_once(out / SPLITS_DIR / f"without-{run.held_out}.csv",
                               lambda: lso_split(folded, run.held_out))
        name = f"fold{run.fold}{'-inner' if run.inner else ''}.csv"
        return _write_once(out / SPLITS_DIR / name, lambda: fold_split(folded, run.fold, inner_val=run.inner))
    return split_file


def _held_out_sources(folded: pd.DataFrame, names: Sequence[str] | None) -> list[str]:
    """The sources to hold out: ``names`` (checked against the eligible ones) or every eligible source."""
    eligible = lso_sources(folded)
    unknown = [n for n in names or [] if n not in eligible]
    if unknown:
        raise ConfigError(f"--lso-sources {', '.join(unknown)}: not a source with two or more classes here; "
                          f"choose among {', '.join(eligible)}")
    return list(dict.fromkeys(names)) if names else eligible


def reproduce_cv(profile: Profile, out: str | Path, k: int, *, pseudo_test: bool = False,
                 ablations: Sequence[str] = (), mitigations: Sequence[str] = (),
                 leave_source_out: bool = False, lso_models: Sequence[str] = LSO_MODELS,
                 lso_sources: Sequence[str] | None = None, lso_variants: Sequence[str] = ("",),
                 inner_val: bool = False, folds: Sequence[int] | None = None, jobs: int = 1,
                 executor: Executor | None = None, report_only: bool = False,
                 log: Callable[[str], None] = print) -> Path:
    """Train what is missing, then write the cross-validated report; returns the path of its ``report.md``.

    ``folds``: a subset of the folds to run (pilots, recipe search); the report then says which.
    ``ablations``: names of `profiles.ABLATIONS` to train and compare with the default PEPX-ResNet.
    ``mitigations``: variants of `profiles.MITIGATIONS` (``a+b``, ``unmitigated``) to train and compare.
    ``lso_sources``: the sources held out (default: every one with two or more classes);
    ``lso_variants``: the variants trained per held-out source (``""``: the profile's recipe).
    ``executor``: where the runs train (`pepx.experiments.executors`; default: this machine, ``jobs`` at a
    time). ``report_only``: train nothing; rebuild the report from complete run folders (`RunError` when
    some are missing).
    """
    start = time.perf_counter()
    out = Path(out)
    if inner_val and leave_source_out:
        raise ConfigError("--inner-val scores a recipe on inner folds; leave-source-out has none: "
                          "run them separately")
    if report_only:
        require_grid(out)
    elif executor is not None:
        executor.open()  # before anything is written: an engine that cannot be reached is refused first
    folded = prepare_cv(profile, out, k, pseudo_test=pseudo_test)
    folds = sorted(set(range(k) if folds is None else folds))
    if not folds or min(folds) < 0 or max(folds) >= k:
        raise ConfigError(f"--folds {folds}: choose among 0..{k - 1}")
    seeds = range(profile.seeds)
    loss = HEADLINE[1] if HEADLINE[1] in profile.losses else profile.losses[0]
    runs = plan(profile.models, profile.losses, seeds, folds, inner=inner_val)
    if ablations:
        runs += [r for r in ablation_runs(loss, seeds, folds, inner=inner_val, variants=ablations)
                 if r not in runs]
    if mitigations:
        extra = mitigation_runs(loss, seeds, folds, mitigations, inner=inner_val)
        runs += [r for r in extra if r not in runs]
    sources = _held_out_sources(folded, lso_sources) if leave_source_out else []
    if leave_source_out:
        runs += lso_runs(lso_models, loss, seeds, sources, variants=lso_variants)
    folders = train_runs(profile, out, runs, split_of(out, folded), n_jobs=jobs, log=log, executor=executor,
                         report_only=report_only)
    train_seconds = time.perf_counter() - start
    log("writing the report ...")
    timings = read_timings(out)
    report_dir = out / INNER_DIR if inner_val else out
    path = write_cv_report(profile, report_dir, folded, folders, folds=folds, k=k, pseudo_test=pseudo_test,
                           inner_val=inner_val, ablations=bool(ablations), mitigations=bool(mitigations),
                           sources=sources, loss=loss,
                           split_dir=out / SPLITS_DIR, timings=timings, train_seconds=train_seconds,
                           start=start)
    log(f"report: {path} ({time.perf_counter() - start:.0f} s)")
    return path
