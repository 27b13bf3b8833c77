"""`pepx reproduce`: the paper's grid on one split; Tables 1-4, Figures 9-10, paired tests in report.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path

import pandas as pd

from pepx import CLASSES
from pepx.evaluation.breakdown import BREAKDOWN_METRICS
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.metrics import mean_predictions
from pepx.evaluation.report import breakdown_markdown, fmt_ci, write_json
from pepx.evaluation.stats import ALPHA, pairwise_tests
from pepx.experiments.figures import MODEL_NAMES, figure9, figure10, residual_figure
from pepx.experiments.grid import SPLIT_FILE, TIMINGS_FILE, GridRun, run_grid
from pepx.experiments.paper import paper_value
from pepx.experiments.profiles import Profile, get_profile
from pepx.experiments.tables import LOSS_NAMES, cell_summary, write_tables
from pepx.markdown import markdown_table
from pepx.training.layout import RunLayout

HEADLINE = ("pepx_resnet", "focal")
Cell = tuple[str, str]


def cell_label(cell: Cell) -> str:
    """``PEPX-ResNet + focal``."""
    return f"{MODEL_NAMES.get(cell[0], cell[0])} + {LOSS_NAMES.get(cell[1], cell[1])}"


def comparison_pairs(cells: Sequence[Cell], headline: Cell = HEADLINE) -> list[tuple[Cell, Cell]]:
    """Every pair of networks under the same loss, then the headline cell against every other cell."""
    pairs = [(a, b) for a, b in combinations(cells, 2) if a[1] == b[1]]
    if headline in cells:
        pairs += [(headline, c) for c in cells
                  if c != headline and (headline, c) not in pairs and (c, headline) not in pairs]
    return pairs


Frames = dict[Cell, list[pd.DataFrame]]


def collect(folders: dict[GridRun, Path]) -> tuple[Frames, Frames]:
    """Per cell, the seeds' final test predictions and their per-epoch metrics frames."""
    preds: Frames = {}
    metrics: Frames = {}
    for run, path in folders.items():
        layout = RunLayout(path)
        preds.setdefault((run.model, run.loss), []).append(pd.read_csv(layout.predictions))
        metrics.setdefault((run.model, run.loss), []).append(pd.read_csv(layout.metrics))
    return preds, metrics


def paired_tests(preds: Frames, n_boot: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """McNemar + Holm on the seed ensembles (mean probabilities), and per seed (seed k vs seed k)."""
    pairs = [(cell_label(a), cell_label(b)) for a, b in comparison_pairs(list(preds))]
    ensemble = pairwise_tests({cell_label(c): mean_predictions(f) for c, f in preds.items()}, pairs,
                              n_boot=n_boot)
    n_seeds = min(len(f) for f in preds.values())
    per_seed = [pairwise_tests({cell_label(c): f[k] for c, f in preds.items()}, pairs, n_boot=n_boot)
                .assign(seed=k) for k in range(n_seeds)] if n_seeds > 1 else []
    return ensemble, (pd.concat(per_seed, ignore_index=True) if per_seed else pd.DataFrame())


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _fmt_p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _tests_markdown(ensemble: pd.DataFrame, per_seed: pd.DataFrame) -> str:
    if ensemble.empty:
        return "Nothing to compare: the grid has a single network and loss."
    frame = pd.DataFrame({
        "A": ensemble["a"], "B": ensemble["b"], "acc A": ensemble["acc_a"], "acc B": ensemble["acc_b"],
        "A − B [95 % CI]": [fmt_ci(d, lo, hi) for d, lo, hi in
                            zip(ensemble["diff"], ensemble["diff_low"], ensemble["diff_high"], strict=True)],
        "only A right": ensemble["b_only_a"], "only B right": ensemble["c_only_b"],
        "p (exact)": ensemble["p"].map(_fmt_p), "p (Holm)": ensemble["p_holm"].map(_fmt_p),
        "verdict": ensemble["verdict"],
    })
    if not per_seed.empty:
        verdicts = per_seed.groupby(["a", "b"], sort=False)["verdict"]
        n = per_seed["seed"].nunique()
        frame["per seed (Holm < 0.05)"] = [
            f"{int((v != 'no significant difference').sum())}/{n}: " + "; ".join(sorted(set(v)))
            for _, v in verdicts]
    return markdown_table(frame, digits=4)


def _versions() -> dict[str, str]:
    import lightning
    import numpy
    import torch
    import torchmetrics

    import pepx

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(pepx.__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"CPU, {os.cpu_count()} cores ({platform.machine()})")
    return {"pepx": pepx.__version__, "git": commit or "unknown", "python": platform.python_version(),
            "torch": torch.__version__, "lightning": lightning.__version__,
            "torchmetrics": torchmetrics.__version__, "numpy": numpy.__version__, "device": device,
            "platform": platform.platform()}


def _split_markdown(split: pd.DataFrame) -> str:
    counts = pd.crosstab(split["split"], split["label"]).reindex(columns=list(CLASSES), fill_value=0)
    counts["patients"] = split.groupby("split")["patient_id"].nunique()
    return markdown_table(counts, index=True)


def reproduce(data: str | None = None, profile: str | Profile = "smoke", seeds: int | None = None,
              out: str | Path = "runs/reproduce", *, n_train: int | None = None, n_test: int | None = None,
              epochs: int | None = None, models: Sequence[str] | None = None,
              losses: Sequence[str] | None = None, log: Callable[[str], None] = print) -> Path:
    """Train the grid (skipping complete runs), then write Tables 1-4, figures and ``report.md`` into ``out``.

    Returns the path of ``report.md``. ``None`` arguments take the profile's value.
    """
    from pepx.data import confound_report, leak_check, load_split

    start = time.perf_counter()
    overrides = dict(data=data, seeds=seeds, n_train=n_train, n_test=n_test, epochs=epochs, models=models,
                     losses=losses)
    prof = (profile.with_overrides(**overrides) if isinstance(profile, Profile)
            else get_profile(profile, **overrides))
    out = Path(out)
    folders = run_grid(prof, out, range(prof.seeds), log=log)
    train_seconds = time.perf_counter() - start
    log("writing the report ...")
    preds, metrics = collect(folders)
    summary = cell_summary(preds, n_boot=prof.n_boot)
    summary.to_csv(out / "summary.csv", index=False)
    tables = write_tables(summary, out)
    figure9(metrics, out / "figure9.png")
    figure10(metrics, out / "figure10.png")
    has_abc = residual_figure(metrics, out / "figure_abc.png") is not None
    ensemble, per_seed = paired_tests(preds, n_boot=prof.n_boot)
    ensemble.to_csv(out / "paired_tests.csv", index=False)
    if not per_seed.empty:
        per_seed.to_csv(out / "paired_tests_per_seed.csv", index=False)
    split = load_split(out / SPLIT_FILE)
    confounds, leaks = confound_report(split), leak_check(split, decode=True)
    head = HEADLINE if HEADLINE in preds else next(iter(preds))
    head_eval = evaluate_predictions(mean_predictions(preds[head]), out / "headline", n_boot=prof.n_boot,
                                     title=f"{cell_label(head)} (seed ensemble)")
    timings = json.loads((out / TIMINGS_FILE).read_text()) if (out / TIMINGS_FILE).exists() else {}
    total = time.perf_counter() - start
    text = _report(prof, preds, summary, tables, ensemble, per_seed, split, confounds, leaks, head, head_eval,
                   has_abc, timings, train_seconds, total)
    path = out / "report.md"
    path.write_text(text)
    write_json({"profile": prof.to_dict(), "versions": _versions(), "timings_s": timings,
                "total_s": time.perf_counter() - start}, out / "provenance.json")
    log(f"report: {path} ({time.perf_counter() - start:.0f} s)")
    return path


def _report(prof: Profile, preds: dict, summary: pd.DataFrame, tables: dict[int, str], ensemble: pd.DataFrame,
            per_seed: pd.DataFrame, split: pd.DataFrame, confounds, leaks, head: Cell, head_eval: dict,
            has_abc: bool, timings: dict[str, float], train_seconds: float, total: float) -> str:
    n_seeds = min(len(f) for f in preds.values())
    acc = summary[summary["metric"] == "accuracy"].set_index(["model", "loss"]).loc[head]
    significant = ensemble[ensemble["verdict"] != "no significant difference"]
    found = ("; ".join(f"{r.a} > {r.b}" if r.diff > 0 else f"{r.b} > {r.a}" for r in significant.itertuples())
             if len(significant) else "no network or loss is shown to differ from another")
    lines = [
        f"# pepx reproduce — profile `{prof.name}`", "",
        f"Data `{prof.data}`; {prof.n_train} train / {prof.n_test} test images per class, one balanced "
        f"patient-disjoint split for every run; {prof.image_size} px, width {prof.width}, "
        f"{prof.epochs} epochs; {n_seeds} seed(s). Wall time {_duration(total)} "
        f"({_duration(train_seconds)} of it training in this call).", "",
        f"**Headline.** {cell_label(head)}: test accuracy {fmt_ci(acc['mean'], acc['low'], acc['high'])} "
        f"(paper: {paper_value(1, head[0])}). {len(significant)} of {len(ensemble)} paired comparisons are "
        f"significant after Holm (α = {ALPHA}): {found}.", "",
    ]
    if confounds.warnings:
        lines += ["## Warning: the data let a shortcut through", "",
                  "In this split a source or an age group on its own identifies a class (list below). A "
                  "network can then score by recognising the hospital, scanner or the patient's age instead "
                  "of the disease, and the tables measure that as much as pneumonia or COVID-19. Read them "
                  "with the per-source and per-age breakdowns further down.", ""]
        lines += [f"- {w}" for w in confounds.warnings] + [""]
    lines += ["## Tables 1–4", "",
              "Ours: mean ± sd over seeds [95 % CI], final epoch, test split. Paper: the published number "
              "for that network (the paper does not say which loss its rows used; one run, no interval).", ""]
    for k in sorted(tables):
        lines += [tables[k], ""]
    lines += ["CSV: `table1.csv` … `table4.csv`, all metrics in `summary.csv`.", "",
              "## Figures", "", "![Figure 9](figure9.png)", "", "![Figure 10](figure10.png)", ""]
    if has_abc:
        lines += ["![A, B, C per block](figure_abc.png)", ""]
    lines += ["## Paired tests (McNemar, same test images)", "",
              "Seed ensembles (mean probabilities over seeds) compared image by image; exact two-sided "
              "McNemar p-values, Holm-adjusted over all comparisons listed. \"Better\" only where "
              f"p (Holm) < {ALPHA}.", "",
              _tests_markdown(ensemble, per_seed), ""]
    lines += ["## Data", "", _split_markdown(split), "", confounds.to_markdown(), "",
              leaks.to_markdown(), ""]
    lines += [f"## Breakdown of the headline model ({cell_label(head)})", "",
              "Full evaluation (confusion matrix, reliability diagram, ECE): [headline/report.md]"
              "(headline/report.md).", ""]
    for col, groups in head_eval["breakdowns"].items():
        lines += [f"### By {col}", "", breakdown_markdown(groups, BREAKDOWN_METRICS), ""]
    lines += _provenance(prof, timings, total) + _method_notes(prof)
    return "\n".join(lines)


def _provenance(prof: Profile, timings: dict[str, float], total: float) -> list[str]:
    runs = pd.DataFrame({"run": list(timings), "wall s": list(timings.values())})
    versions = pd.DataFrame(list(_versions().items()), columns=["package", "version"])
    settings = pd.DataFrame([(k, str(v)) for k, v in prof.to_dict().items()], columns=["setting", "value"])
    return ["## Configuration and provenance", "", markdown_table(settings), "",
            markdown_table(runs, digits=1), "",
            f"Sum of run wall times {_duration(sum(timings.values()))} (all attempts); this call "
            f"{_duration(total)}.", "", markdown_table(versions), ""]


def _method_notes(prof: Profile) -> list[str]:
    return ["## Statistics", "",
            f"- CIs: percentile bootstrap, {prof.n_boot} resamples of test *patients* within each class (all "
            "images of a drawn patient move together), seed 0. With several seeds the CI is that of the "
            "seed-averaged metric: each resample is applied to every seed's predictions and averaged. The ± "
            "is the sd over seeds (training randomness); the CI is test-set sampling.",
            "- Paired tests: exact McNemar (binomial on discordant images, no continuity correction), run on "
            "the seed ensembles; with several seeds also seed k vs seed k, summarised per pair. Holm's "
            "correction over all comparisons in the table. Images of one patient are counted as independent "
            "pairs there; the A − B interval is a patient bootstrap.",
            "- Figures: mean over seeds, band = min–max over seeds.", ""]
