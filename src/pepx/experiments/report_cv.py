"""The report of `pepx reproduce --cv K`: pooled out-of-fold Tables 1-4, Figures 9-10 (mean over folds),
paired tests with their power, the ablation, mitigation and leave-source-out tables, the audit and the
breakdowns. What a report is about travels as one `CVContext`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASS_DISPLAY, CLASSES
from pepx.data import confound_report, leak_check, load_split
from pepx.data.folds import TRAIN_ONLY, fold_table, tested_rows
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.metrics import compute_metrics, mean_predictions
from pepx.evaluation.report import write_json
from pepx.evaluation.stats import ALPHA
from pepx.experiments import report_sections as sections
from pepx.experiments.ablations import ablation_section
from pepx.experiments.comparisons import HEADLINE, Frames, cell_label, paired_tests, tests_markdown
from pepx.experiments.external import lso_section
from pepx.experiments.figures import figure9, figure10, residual_figure
from pepx.experiments.grid import (
    INNER_DIR,
    POOLED_DIR,
    GridRun,
    fold_frames,
    group,
    pooled_by,
    pooled_predictions,
    read_predictions,
    read_timings,
    split_file,
)
from pepx.experiments.mitigations import mitigation_section
from pepx.experiments.optimisation import optimisation_section
from pepx.experiments.profiles import ABLATIONS, Profile, is_mitigation
from pepx.experiments.tables import cell_summary, write_tables
from pepx.fileio import write_csv, write_text
from pepx.markdown import markdown_table


@dataclass(frozen=True, eq=False)
class CVContext:
    """One cross-validated experiment: its profile, its folder ``out`` (the grid's) with the fold assignment
    ``folded``, the ``folds`` run of ``k``, the ``loss`` of its ablations, mitigations and held-out sources,
    and which parts of the protocol ran (``sources``: the held-out ones)."""

    profile: Profile
    out: Path
    folded: pd.DataFrame
    folds: tuple[int, ...]
    k: int
    loss: str
    pseudo_test: bool = False
    inner_val: bool = False
    ablations: bool = False
    mitigations: bool = False
    sources: tuple[str, ...] = ()

    @property
    def report_dir(self) -> Path:
        """Where the report goes: ``out``, or ``out/inner-val`` when scored on inner validation folds."""
        return self.out / INNER_DIR if self.inner_val else self.out

    def scored(self, run: GridRun) -> bool:
        """Whether ``run`` is one of this report's fold runs (no held-out source, this report's scoring)."""
        return not run.held_out and run.inner == self.inner_val and run.fold in self.folds


def write_cv_report(ctx: CVContext, folders: dict[GridRun, Path], *, train_seconds: float,
                    start: float) -> Path:
    """Write tables, figures, CSVs and ``report.md`` into ``ctx.report_dir``; return the report's path.
    ``train_seconds``: the training's share of this call, begun at ``start`` (`time.perf_counter`)."""
    prof, out, loss = ctx.profile, ctx.report_dir, ctx.loss
    grid = group(folders, lambda r: (r.model, r.loss) if ctx.scored(r) and not r.variant else None)
    preds = {cell: pooled_predictions(runs) for cell, runs in grid.items()}
    metrics = {cell: fold_frames(runs) for cell, runs in grid.items()}
    ablated = pooled_by(folders, lambda r: r.variant if r.variant in ABLATIONS and ctx.scored(r)
                        and r.loss == loss else None)
    mitigated = pooled_by(folders, lambda r: r.variant if is_mitigation(r.variant) and ctx.scored(r)
                          and r.loss == loss else None)
    held = {key: [read_predictions(p) for p in runs.values()] for key, runs in group(
        folders, lambda r: (r.held_out, (r.model, r.loss, r.variant) if r.variant else (r.model, r.loss))
        if r.held_out else None).items()}
    timings = read_timings(ctx.out)
    (out / POOLED_DIR).mkdir(parents=True, exist_ok=True)
    for (model, cell_loss), frames in preds.items():
        write_csv(pd.concat([f.assign(seed=s) for s, f in enumerate(frames)]),
                  out / POOLED_DIR / f"{model}-{cell_loss}.csv", index=False)
    summary = cell_summary(preds, n_boot=prof.n_boot)
    write_csv(summary, out / "summary.csv", index=False)
    tables = write_tables(summary, out)
    per_fold = fold_accuracy(preds)
    write_csv(per_fold, out / "fold_accuracy.csv", index=False)
    optimisation = optimisation_section(grid, ctx.folded, ctx.folds, out)  # its figure beside Figures 9-10
    figure9(metrics, out / "figure9.png", unit="folds")
    figure10(metrics, out / "figure10.png", unit="folds")
    has_abc = residual_figure(metrics, out / "figure_abc.png", unit="folds") is not None
    ensemble, per_seed = paired_tests(preds, n_boot=prof.n_boot)
    write_csv(ensemble, out / "paired_tests.csv", index=False)
    head = (HEADLINE[0], loss) if (HEADLINE[0], loss) in preds else next(iter(preds))
    head_eval = evaluate_predictions(mean_predictions(preds[head]), out / "headline", n_boot=prof.n_boot,
                                     title=f"{cell_label(head)} (pooled out-of-fold, seed ensemble)")
    confounds = confound_report(tested_rows(ctx.folded, ctx.folds))
    lines = [f"# pepx reproduce --cv {ctx.k} — profile `{prof.name}`"
             f"{' (inner validation)' if ctx.inner_val else ''}", "",
             *sections.smoke_note(prof.data, prof.image_size), _setup(ctx, preds[head][0]), "",
             sections.headline(summary, ensemble, head, head_eval,
                               comparable=not sections.is_synthetic(prof.data)), ""]
    lines += sections.adults_section(head, head_eval)
    lines += sections.shortcut_warning([w for w in confounds.warnings if w.startswith("[test]")])
    lines += sections.tables_section(tables, "pooled out-of-fold predictions of all folds, mean ± sd over "
                                     "seeds [95 % CI], final epoch")
    lines += ["### Accuracy per fold", "", markdown_table(per_fold, digits=3), ""]
    lines += sections.figures_section(has_abc)
    lines += ["## Paired tests (McNemar on the pooled predictions)", "",
              "Every pooled image compared between two cells (seed ensembles); exact two-sided McNemar "
              f"p-values, Holm over the table; \"better\" only where p (Holm) < {ALPHA}. \"80 % power for\": "
              "the smallest difference the test would detect at this discordance.", "",
              tests_markdown(ensemble, per_seed), ""]
    lines += optimisation
    if ctx.ablations:
        lines += ablation_section(preds[(HEADLINE[0], loss)], ablated, loss, prof.n_boot, out)
    if ctx.mitigations:
        lines += mitigation_section(preds[(HEADLINE[0], loss)], mitigated, loss, prof.n_boot, out)
    if ctx.sources:
        variants = {("pepx_resnet", loss, name): frames for name, frames in mitigated.items()}
        lines += lso_section(held, {**preds, **(variants if ctx.mitigations else {})}, prof.n_boot, out)
    leaks = _leak_rows(ctx)
    lines += ["## Data", "", markdown_table(fold_table(ctx.folded), index=True), "", confounds.to_markdown(),
              "", "### Leak check per split", "", markdown_table(leaks), ""]
    lines += sections.breakdown_section(head, head_eval)
    total = time.perf_counter() - start
    lines += [f"Wall time of this call {sections.duration(total)} ({sections.duration(train_seconds)} of it "
              "training).", ""]
    lines += sections.provenance(prof, timings, total) + sections.statistics_notes(prof, unit="folds")
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    write_json({"profile": prof.to_dict(), "cv": ctx.k, "folds": list(ctx.folds),
                "pseudo_test": ctx.pseudo_test, "inner_val": ctx.inner_val, "versions": sections.versions(),
                "timings_s": timings, "leaks": leaks, "total_s": time.perf_counter() - start},
               out / "provenance.json")
    return path


def fold_accuracy(preds: Frames) -> pd.DataFrame:
    """Accuracy of every cell on every fold (seed ensembles), with the mean and sd over folds."""
    rows = []
    for cell, frames in preds.items():
        pooled = mean_predictions(frames) if len(frames) > 1 else frames[0]
        row: dict[str, object] = {"cell": cell_label(cell)}
        for fold, sub in pooled.groupby("fold", sort=True):
            row[f"fold {int(fold)}"] = compute_metrics(sub)["accuracy"]
        values = [v for k, v in row.items() if k.startswith("fold ")]
        row["mean ± sd"] = (f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1
                            else f"{values[0]:.3f}")
        rows.append(row)
    return pd.DataFrame(rows)


def _setup(ctx: CVContext, scored_frame: pd.DataFrame) -> str:
    """The setup paragraph: the data, the folds run, what was scored, the pseudo-id rows and the budget."""
    prof, folded, folds, k = ctx.profile, ctx.folded, ctx.folds, ctx.k
    n_pseudo = int((folded["fold"] == TRAIN_ONLY).sum())
    which = "all" if len(folds) == k else f"{len(folds)} ({', '.join(map(str, folds))})"
    if ctx.pseudo_test:
        pseudo = ("Rows without real patient ids (per-image pseudo ids) were allowed as test images "
                  "(`--pseudo-test`): a person with several such images may sit in train and test.")
    elif n_pseudo:
        pseudo = (f"{n_pseudo} rows without real patient ids (per-image pseudo ids) only ever train (no "
                  "`--pseudo-test`): a person hiding under several such ids could otherwise sit in train and "
                  "test.")
    else:
        pseudo = "Every row has a real patient id."
    scored = ("inner validation folds: run k trains without folds k and k+1 and is scored on fold k+1; the "
              "test folds are never touched" if ctx.inner_val else "out-of-fold test predictions")
    counts = scored_frame["label"].value_counts()
    per_class = " / ".join(str(int(counts.get(c, 0))) for c in CLASSES)
    return (f"Data `{prof.data}`: {len(folded)} labelled images in {k} patient-grouped, class-stratified "
            f"folds; {which} of the folds run. Scored: {len(scored_frame)} images ({per_class} "
            f"{' / '.join(CLASS_DISPLAY)}) by {scored}, each image once by a model that never saw its "
            f"patient. {pseudo} {prof.image_size} px, width {prof.width}, {prof.epochs} epochs, "
            f"{prof.seeds} seed(s).")


def _leak_rows(ctx: CVContext) -> pd.DataFrame:
    """One leak check per split file of ``ctx`` (patients and identical pixels shared by its train and test
    rows)."""
    splits = {f"fold {f}": split_file(ctx.out, f, ctx.inner_val) for f in ctx.folds}
    splits.update({f"without {s}": split_file(ctx.out, None, held_out=s) for s in ctx.sources})
    rows = []
    for name, path in splits.items():
        report = leak_check(load_split(path), decode=True)
        rows.append({"split": name, "patients in train and test": report.n_patient_overlap(),
                     "identical images in train and test": report.n_pixel_duplicates(),
                     "verdict": "OK" if report.ok else "LEAK"})
    return pd.DataFrame(rows)
