"""`pepx reproduce`: the paper's grid on one split; Tables 1-4, Figures 9-10, paired tests in report.md."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from pepx.data import confound_report, leak_check, load_split
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.metrics import mean_predictions
from pepx.evaluation.report import write_json
from pepx.evaluation.stats import ALPHA
from pepx.experiments import report_sections as sections
from pepx.experiments.comparisons import (
    HEADLINE,
    Cell,
    Frames,
    cell_label,
    comparison_pairs,
    paired_tests,
    tests_markdown,
)
from pepx.experiments.executors import Executor
from pepx.experiments.figures import figure9, figure10, residual_figure
from pepx.experiments.grid import (
    SPLIT_FILE,
    GridRun,
    read_metrics,
    read_predictions,
    read_timings,
    run_grid,
)
from pepx.experiments.profiles import Profile, get_profile
from pepx.experiments.tables import cell_summary, write_tables
from pepx.fileio import write_csv, write_text

__all__ = ["collect", "comparison_pairs", "reproduce"]

def collect(folders: dict[GridRun, Path]) -> tuple[Frames, Frames]:
    """Per cell, the seeds' final test predictions and their per-epoch metrics frames."""
    preds: Frames = {}
    metrics: Frames = {}
    for run, path in folders.items():
        preds.setdefault((run.model, run.loss), []).append(read_predictions(path))
        metrics.setdefault((run.model, run.loss), []).append(read_metrics(path))
    return preds, metrics


def reproduce(data: str | None = None, profile: str | Profile = "smoke", seeds: int | None = None,
              out: str | Path = "runs/reproduce", *, n_train: int | None = None, n_test: int | None = None,
              epochs: int | None = None, models: Sequence[str] | None = None,
              losses: Sequence[str] | None = None, jobs: int = 1, executor: Executor | None = None,
              report_only: bool = False, log: Callable[[str], None] = print) -> Path:
    """Train the single-split grid (skipping complete runs), then write Tables 1-4, figures and ``report.md``
    into ``out``; the runs train on ``executor`` (default: this machine, ``jobs`` at once). Returns the path
    of ``report.md``. ``None`` arguments take the profile's value. ``report_only``: train nothing; rebuild
    the report from complete run folders. Cross-validation, ablations and leave-source-out:
    `pepx.experiments.cv.reproduce_cv`.
    """
    start = time.perf_counter()
    prof = resolve_profile(profile, data=data, seeds=seeds, n_train=n_train, n_test=n_test, epochs=epochs,
                           models=models, losses=losses)
    out = Path(out)
    folders = run_grid(prof, out, range(prof.seeds), n_jobs=jobs, log=log, executor=executor,
                       report_only=report_only)
    train_seconds = time.perf_counter() - start
    log("writing the report ...")
    preds, metrics = collect(folders)
    summary = cell_summary(preds, n_boot=prof.n_boot)
    write_csv(summary, out / "summary.csv", index=False)
    tables = write_tables(summary, out)
    figure9(metrics, out / "figure9.png")
    figure10(metrics, out / "figure10.png")
    has_abc = residual_figure(metrics, out / "figure_abc.png") is not None
    ensemble, per_seed = paired_tests(preds, n_boot=prof.n_boot)
    write_csv(ensemble, out / "paired_tests.csv", index=False)
    if not per_seed.empty:
        write_csv(per_seed, out / "paired_tests_per_seed.csv", index=False)
    split = load_split(out / SPLIT_FILE)
    confounds, leaks = confound_report(split), leak_check(split, decode=True)
    head = HEADLINE if HEADLINE in preds else next(iter(preds))
    head_eval = evaluate_predictions(mean_predictions(preds[head]), out / "headline", n_boot=prof.n_boot,
                                     title=f"{cell_label(head)} (seed ensemble)")
    timings = read_timings(out)
    total = time.perf_counter() - start
    lines = _report_head(prof, preds, summary, ensemble, head, head_eval, train_seconds, total)
    lines += sections.adults_section(head, head_eval)
    lines += sections.shortcut_warning(confounds.warnings)
    lines += sections.tables_section(tables, "mean ± sd over seeds [95 % CI], final epoch, test split")
    lines += sections.figures_section(has_abc)
    lines += ["## Paired tests (McNemar, same test images)", "",
              "Seed ensembles (mean probabilities over seeds) compared image by image; exact two-sided "
              "McNemar p-values, Holm-adjusted over all comparisons listed. \"Better\" only where "
              f"p (Holm) < {ALPHA}.", "", tests_markdown(ensemble, per_seed), ""]
    lines += ["## Data", "", sections.split_markdown(split), "", confounds.to_markdown(), "",
              leaks.to_markdown(), ""]
    lines += sections.breakdown_section(head, head_eval)
    lines += sections.provenance(prof, timings, total) + sections.statistics_notes(prof)
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    write_json({"profile": prof.to_dict(), "versions": sections.versions(), "timings_s": timings,
                "total_s": time.perf_counter() - start}, out / "provenance.json")
    log(f"report: {path} ({time.perf_counter() - start:.0f} s)")
    return path


def resolve_profile(profile: str | Profile, **overrides) -> Profile:
    """A profile (by name or as given) with the non-None ``overrides`` applied."""
    return (profile.with_overrides(**overrides) if isinstance(profile, Profile)
            else get_profile(profile, **overrides))


def _report_head(prof: Profile, preds: Frames, summary: pd.DataFrame, ensemble: pd.DataFrame, head: Cell,
                 head_eval: dict, train_seconds: float, total: float) -> list[str]:
    n_seeds = min(len(f) for f in preds.values())
    synthetic = sections.is_synthetic(prof.data)
    title = f"# pepx reproduce — profile `{prof.name}`" + (": a synthetic smoke test" if synthetic else "")
    return [
        title, "", *sections.smoke_note(prof.data, prof.image_size),
        f"Data `{prof.data}`; {prof.n_train} train / {prof.n_test} test images per class, one balanced "
        f"patient-disjoint split for every run; {prof.image_size} px, width {prof.width}, "
        f"{prof.epochs} epochs; {n_seeds} seed(s). Wall time {sections.duration(total)} "
        f"({sections.duration(train_seconds)} of it training in this call).", "",
        sections.headline(summary, ensemble, head, head_eval, comparable=not synthetic), "",
    ]
