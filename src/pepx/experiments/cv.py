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

from pepx.data import load_source
from pepx.data.folds import CVFolds, cv_folds
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


def prepare_cv(profile: Profile, out: Path, k: int, pseudo_test: bool = False,
               folds: Sequence[int] | None = None, lso_sources: Sequence[str] | None = None,
               leave_source_out: bool = False) -> CVFolds:
    """Create ``out`` with its fold assignment ``folds.csv`` (made once; an ``out`` made with other
    settings is refused) and return it with the ``folds`` run and the held-out sources (`cv_folds`)."""
    claim(out, profile, cv=k, pseudo_test=pseudo_test)
    return cv_folds(out / FOLDS_FILE, lambda: load_source(profile.data).manifest, k, seed=profile.split_seed,
                    pseudo_test=pseudo_test, folds=folds, lso=lso_sources, leave_source_out=leave_source_out)


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
    assignment = prepare_cv(profile, out, k, pseudo_test=pseudo_test, folds=folds, lso_sources=lso_sources,
                            leave_source_out=leave_source_out)
    loss = HEADLINE[1] if HEADLINE[1] in profile.losses else profile.losses[0]
    ctx = CVContext(profile, out, assignment.folded, assignment.folds, k, loss=loss,
                    sources=assignment.sources, pseudo_test=pseudo_test, inner_val=inner_val,
                    ablations=bool(ablations), mitigations=bool(mitigations))
    runs = cv_runs(ctx, ablations, mitigations, lso_models, lso_variants)
    splits = {} if report_only else {  # every run's split file, written before training starts
        run: assignment.write_split(split_file(out, run.fold, run.inner, run.held_out), run.fold, run.inner,
                                    run.held_out) for run in runs}
    folders = train_runs(profile, out, runs, splits.__getitem__, n_jobs=jobs, log=log, executor=executor,
                         report_only=report_only)
    train_seconds = time.perf_counter() - start
    log("writing the report ...")
    path = write_cv_report(ctx, folders, train_seconds=train_seconds, start=start)
    log(f"report: {path} ({time.perf_counter() - start:.0f} s)")
    return path
