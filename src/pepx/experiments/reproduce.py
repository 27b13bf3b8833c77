"""`pepx reproduce`: the paper's grid on one split; Tables 1-4, Figures 9-10, paired tests in report.md."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from pepx.data import confound_report, leak_check, load_split
from pepx.evaluation.adults import adults_markdown
from pepx.evaluation.breakdown import breakdown_sections
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.metrics import mean_predictions
from pepx.evaluation.report import fmt_ci, write_json
from pepx.evaluation.stats import ALPHA
from pepx.experiments.comparisons import (
    HEADLINE,
    Cell,
    Frames,
    cell_label,
    comparison_pairs,
    headline_sentences,
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
from pepx.experiments.paper import paper_value
from pepx.experiments.profiles import Profile, get_profile
from pepx.experiments.report_parts import duration, provenance, split_markdown, statistics_notes, versions
from pepx.experiments.tables import cell_summary, paper_terms_note, write_tables
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
    lines += adults_section(head, head_eval)
    lines += shortcut_warning(confounds.warnings)
    lines += tables_section(tables, "mean ± sd over seeds [95 % CI], final epoch, test split")
    lines += figures_section(has_abc)
    lines += ["## Paired tests (McNemar, same test images)", "",
              "Seed ensembles (mean probabilities over seeds) compared image by image; exact two-sided "
              "McNemar p-values, Holm-adjusted over all comparisons listed. \"Better\" only where "
              f"p (Holm) < {ALPHA}.", "", tests_markdown(ensemble, per_seed), ""]
    lines += ["## Data", "", split_markdown(split), "", confounds.to_markdown(), "", leaks.to_markdown(), ""]
    lines += breakdown_section(head, head_eval)
    lines += provenance(prof, timings, total) + statistics_notes(prof)
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    write_json({"profile": prof.to_dict(), "versions": versions(), "timings_s": timings,
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
    synthetic = is_synthetic(prof.data)
    title = f"# pepx reproduce — profile `{prof.name}`" + (": a synthetic smoke test" if synthetic else "")
    return [
        title, "", *smoke_note(prof.data, prof.image_size),
        f"Data `{prof.data}`; {prof.n_train} train / {prof.n_test} test images per class, one balanced "
        f"patient-disjoint split for every run; {prof.image_size} px, width {prof.width}, "
        f"{prof.epochs} epochs; {n_seeds} seed(s). Wall time {duration(total)} "
        f"({duration(train_seconds)} of it training in this call).", "",
        headline(summary, ensemble, head, head_eval, comparable=not synthetic), "",
    ]


def is_synthetic(data: str) -> bool:
    """Whether a data SOURCE is pepx's generated films (`synthetic`, `synthetic:...`)."""
    return data.split(":", 1)[0] == "synthetic"


def smoke_note(data: str, image_size: int) -> list[str]:
    """The report's first paragraph when its data are pepx's synthetic films (none otherwise)."""
    if not is_synthetic(data):
        return []
    return [f"> **A synthetic smoke test, not comparable with the paper.** These {image_size}-px films are "
            "drawn by pepx itself (`pepx.data.synthetic`: simulated lungs, ribs and lesions, no patient),"
            " so the numbers below only show that training, evaluation and this report run end to end. The "
            "paper's numbers beside them come from real chest X-rays: no conclusion about the networks, the "
            "losses or the paper can be drawn from the comparison. `pepx reproduce --profile cpu` runs the "
            "grid on real films.", ""]


def headline(summary: pd.DataFrame, ensemble: pd.DataFrame, head: Cell, head_eval: dict,
             comparable: bool = True) -> str:
    """The headline paragraph: one number - the headline cell's seed-ensemble accuracy, as in
    `headline/report.md` - with its definition, the mean over seeds it differs from, how many comparisons
    are significant, and what the tests can and cannot tell about it against the other networks."""
    seeds = summary[summary["metric"] == "accuracy"].set_index(["model", "loss"]).loc[head]
    acc = head_eval["metrics"].set_index("metric").loc["accuracy"]
    significant = ensemble[ensemble["verdict"] != "no significant difference"]
    found = ("; ".join(f"{r.a} > {r.b}" if r.diff > 0 else f"{r.b} > {r.a}" for r in significant.itertuples())
             if len(significant) else "no network or loss is shown to differ from another")
    paper = (f"paper, on its own data: {paper_value(1, head[0])}" if comparable else
             "the paper's number is not comparable with synthetic films")
    text = (f"**Headline: accuracy {fmt_ci(acc['value'], acc['low'], acc['high'])}** ({cell_label(head)}; "
            f"{paper}). Definition: the share of the {head_eval['n_images']} test images whose most probable "
            f"class, averaging the {int(seeds['n_seeds'])} seeds' probabilities per image (a seed ensemble), "
            "is their label; 95 % patient-bootstrap interval; details in [headline/report.md]"
            f"(headline/report.md). Table 1 gives instead the mean of the seeds' own accuracies, "
            f"{fmt_ci(seeds['mean'], seeds['low'], seeds['high'])}. {len(significant)} of {len(ensemble)} "
            f"paired comparisons are significant after Holm (α = {ALPHA}): {found}.")
    sentences = headline_sentences(ensemble, head) if not ensemble.empty else []
    return text + ("".join(f" {s}" for s in sentences))


def shortcut_warning(warnings: Sequence[str]) -> list[str]:
    if not warnings:
        return []
    return ["## Warning: the data let a shortcut through", "",
            "In these test images a source, an age group or a view on its own identifies a class, or goes "
            "with one (list below). A network can then score by recognising the hospital, scanner, view or "
            "the patient's age instead of the disease, and the tables measure that as much as pneumonia or "
            "COVID-19. Read them with the adults-only table and the per-source, per-age and per-view "
            "breakdowns further down.", "",
            *[f"- {w}" for w in warnings], ""]


def tables_section(tables: dict[int, str], ours: str) -> list[str]:
    lines = ["## Tables 1–4", "",
             f"Ours: {ours}. Paper: the published number for that network (the paper does not say which loss "
             "its rows used; one run, no interval).", ""]
    for k in sorted(tables):
        lines += [tables[k], ""]
    return lines + ["CSV: `table1.csv` … `table4.csv`, all metrics in `summary.csv`.", "",
                    f"<sub>{paper_terms_note()}</sub>", ""]


def figures_section(has_abc: bool) -> list[str]:
    lines = ["## Figures", "", "![Figure 9](figure9.png)", "", "![Figure 10](figure10.png)", ""]
    return lines + (["![A, B, C per block](figure_abc.png)", ""] if has_abc else [])


def breakdown_section(head: Cell, head_eval: dict) -> list[str]:
    lines = [f"## Breakdown of the headline model ({cell_label(head)})", "",
             "Full evaluation (confusion matrix, reliability diagram, ECE): [headline/report.md]"
             "(headline/report.md).", ""]
    return lines + breakdown_sections(head_eval["breakdowns"], heading="###")


def adults_section(head: Cell, head_eval: dict) -> list[str]:
    """The headline model's adults-only table (with its by-view table), beside the headline."""
    return adults_markdown(head_eval["adults"], heading="##", whose=cell_label(head))
