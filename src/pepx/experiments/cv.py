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
from pepx.data.folds import add_pixel_hashes, assign_folds, fold_split, held_out_sources, lso_split
from pepx.errors import ConfigError
from pepx.experiments.ablations import ablation_runs
from pepx.experiments.comparisons import HEADLINE
from pepx.experiments.executors import Executor
from pepx.experiments.external import LSO_MODELS, lso_runs
from pepx.experiments.grid import (
    FOLDS_FILE,
    GridRun,
    claim,
    plan,
    require_grid,
    split_file,
    train_runs,
)
from pepx.experiments.mitigations import mitigation_runs
from pepx.experiments.profiles import Profile
from pepx.experiments.report_cv import CVContext, write_cv_report
from pepx.fileio import write_csv


def prepare_cv(profile: Profile, out: Path, k: int, pseudo_test: bool = False) -> pd.DataFrame:
    """Create ``out`` with its fold assignment ``folds.csv`` (made once; an ``out`` made with other
    settings is refused) and return it."""
    claim(out, profile, cv=k, pseudo_test=pseudo_test)
    path = out / FOLDS_FILE
    if not path.exists():
        folded = add_pixel_hashes(assign_folds(load_source(profile.data).manifest, k, seed=profile.split_seed,
                                               pseudo_test=pseudo_test))
        write_csv(folded, path, index=False)
    return pd.read_csv(path, dtype={"patient_id": str, "label": str, "path": str})


def split_of(out: Path, folded: pd.DataFrame) -> Callable[[GridRun], Path]:
    """The split file of a run (written on first use): its fold's, inner fold's or held-out source's."""
    def split_path(run: GridRun) -> Path:
        path = split_file(out, run.fold, run.inner, run.held_out)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            split = (lso_split(folded, run.held_out) if run.held_out
                     else fold_split(folded, run.fold, inner_val=run.inner))
            write_csv(split, path, index=False)
        return path
    return split_path


def cv_runs(ctx: CVContext, ablations: Sequence[str], mitigations: Sequence[str], lso_models: Sequence[str],
            lso_variants: Sequence[str]) -> list[GridRun]:
    """The runs of ``ctx``: the grid on its folds, then the ablations, mitigations and held-out sources
    (each run once, in that order)."""
    seeds, folds, inner = range(ctx.profile.seeds), ctx.folds, ctx.inner_val
    runs = plan(ctx.profile.models, ctx.profile.losses, seeds, folds, inner=inner)
    if ablations:
        runs += [r for r in ablation_runs(ctx.loss, seeds, folds, inner=inner, variants=ablations)
                 if r not in runs]
    if mitigations:
        extra = mitigation_runs(ctx.loss, seeds, folds, mitigations, inner=inner)
        runs += [r for r in extra if r not in runs]
    return runs + lso_runs(lso_models, ctx.loss, seeds, ctx.sources, variants=lso_variants)


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
    ctx = CVContext(profile, out, folded, tuple(folds), k,
                    loss=HEADLINE[1] if HEADLINE[1] in profile.losses else profile.losses[0],
                    pseudo_test=pseudo_test, inner_val=inner_val, ablations=bool(ablations),
                    mitigations=bool(mitigations),
                    sources=tuple(held_out_sources(folded, lso_sources)) if leave_source_out else ())
    runs = cv_runs(ctx, ablations, mitigations, lso_models, lso_variants)
    folders = train_runs(profile, out, runs, split_of(out, folded), n_jobs=jobs, log=log, executor=executor,
                         report_only=report_only)
    train_seconds = time.perf_counter() - start
    log("writing the report ...")
    path = write_cv_report(ctx, folders, train_seconds=train_seconds, start=start)
    log(f"report: {path} ({time.perf_counter() - start:.0f} s)")
    return path
