"""The report of `pepx reproduce --cv K`: pooled out-of-fold Tables 1-4, Figures 9-10 (mean over folds),
paired tests with their power, the ablation and leave-source-out tables, the audit and the breakdowns."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASS_DISPLAY, CLASSES
from pepx.data import confound_report, leak_check, load_split
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.metrics import compute_metrics, mean_predictions
from pepx.evaluation.report import write_json
from pepx.evaluation.stats import ALPHA
from pepx.experiments.ablations import ablation_markdown, ablation_tests
from pepx.experiments.comparisons import HEADLINE, Frames, cell_label, paired_tests, tests_markdown
from pepx.experiments.external import lso_markdown, lso_sentence, lso_table
from pepx.experiments.figures import figure9, figure10, residual_figure
from pepx.experiments.folds import TRAIN_ONLY, fold_table
from pepx.experiments.grid import GridRun, fold_frames, group, pooled_predictions, read_predictions
from pepx.experiments.mitigations import mitigation_markdown, mitigation_tests
from pepx.experiments.optimisation import optimisation_section
from pepx.experiments.profiles import ABLATIONS, Profile, describe_variant, is_mitigation
from pepx.experiments.report_parts import duration, provenance, statistics_notes, versions
from pepx.experiments.reproduce import (
    adults_section,
    breakdown_section,
    figures_section,
    headline,
    is_synthetic,
    shortcut_warning,
    smoke_note,
    tables_section,
)
from pepx.experiments.tables import cell_summary, write_tables
from pepx.fileio import write_csv, write_text
from pepx.markdown import markdown_table


def _grid(folders: dict[GridRun, Path], folds: Sequence[int], inner: bool) -> dict:
    """The grid's runs (no ablation, no held-out source) of ``folds``, grouped by cell."""
    return group(folders, lambda r: (r.model, r.loss) if not r.variant and not r.held_out and r.inner == inner
                 and r.fold in folds else None)


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


def _leak_rows(split_files: dict[str, Path]) -> pd.DataFrame:
    """One leak check per split file (patients and identical pixels shared by its train and test rows)."""
    rows = []
    for name, path in split_files.items():
        report = leak_check(load_split(path), decode=True)
        rows.append({"split": name, "patients in train and test": report.n_patient_overlap(),
                     "identical images in train and test": report.n_pixel_duplicates(),
                     "verdict": "OK" if report.ok else "LEAK"})
    return pd.DataFrame(rows)


def _tested_rows(folded: pd.DataFrame, folds: Sequence[int]) -> pd.DataFrame:
    """The folded frame with ``split``: test for the run folds' rows, train for training-only rows."""
    rows = folded[folded["fold"].isin(folds) | (folded["fold"] == TRAIN_ONLY)]
    return rows.assign(split=np.where(rows["fold"] == TRAIN_ONLY, "train", "test"))


def _setup(prof: Profile, folded: pd.DataFrame, folds: Sequence[int], k: int, pseudo_test: bool,
           inner_val: bool, scored_frame: pd.DataFrame) -> str:
    n_pseudo = int((folded["fold"] == TRAIN_ONLY).sum())
    which = "all" if len(folds) == k else f"{len(folds)} ({', '.join(map(str, folds))})"
    if pseudo_test:
        pseudo = ("Rows without real patient ids (per-image pseudo ids) were allowed as test images "
                  "(`--pseudo-test`): a person with several such images may sit in train and test.")
    elif n_pseudo:
        pseudo = (f"{n_pseudo} rows without real patient ids (per-image pseudo ids) only ever train (no "
                  "`--pseudo-test`): a person hiding under several such ids could otherwise sit in train and "
                  "test.")
    else:
        pseudo = "Every row has a real patient id."
    scored = ("inner validation folds: run k trains without folds k and k+1 and is scored on fold k+1; the "
              "test folds are never touched" if inner_val else "out-of-fold test predictions")
    counts = scored_frame["label"].value_counts()
    per_class = " / ".join(str(int(counts.get(c, 0))) for c in CLASSES)
    return (f"Data `{prof.data}`: {len(folded)} labelled images in {k} patient-grouped, class-stratified "
            f"folds; {which} of the folds run. Scored: {len(scored_frame)} images ({per_class} "
            f"{' / '.join(CLASS_DISPLAY)}) by {scored}, each image once by a model that never saw its "
            f"patient. {pseudo} {prof.image_size} px, width {prof.width}, {prof.epochs} epochs, "
            f"{prof.seeds} seed(s).")


def write_cv_report(prof: Profile, out: Path, folded: pd.DataFrame, folders: dict[GridRun, Path], *,
                    folds: Sequence[int], k: int, pseudo_test: bool, inner_val: bool, ablations: bool,
                    mitigations: bool,
                    sources: Sequence[str], loss: str, split_dir: Path, timings: dict[str, float],
                    train_seconds: float, start: float) -> Path:
    """Write tables, figures, CSVs and ``report.md`` into ``out``; return the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    grid = _grid(folders, folds, inner_val)
    preds = {cell: pooled_predictions(runs) for cell, runs in grid.items()}
    metrics = {cell: fold_frames(runs) for cell, runs in grid.items()}
    (out / "pooled").mkdir(exist_ok=True)
    for (model, cell_loss), frames in preds.items():
        write_csv(pd.concat([f.assign(seed=s) for s, f in enumerate(frames)]),
                  out / "pooled" / f"{model}-{cell_loss}.csv", index=False)
    summary = cell_summary(preds, n_boot=prof.n_boot)
    write_csv(summary, out / "summary.csv", index=False)
    tables = write_tables(summary, out)
    per_fold = fold_accuracy(preds)
    write_csv(per_fold, out / "fold_accuracy.csv", index=False)
    figure9(metrics, out / "figure9.png", unit="folds")
    figure10(metrics, out / "figure10.png", unit="folds")
    has_abc = residual_figure(metrics, out / "figure_abc.png", unit="folds") is not None
    ensemble, per_seed = paired_tests(preds, n_boot=prof.n_boot)
    write_csv(ensemble, out / "paired_tests.csv", index=False)
    head = (HEADLINE[0], loss) if (HEADLINE[0], loss) in preds else next(iter(preds))
    head_eval = evaluate_predictions(mean_predictions(preds[head]), out / "headline", n_boot=prof.n_boot,
                                     title=f"{cell_label(head)} (pooled out-of-fold, seed ensemble)")
    lines = [f"# pepx reproduce --cv {k} — profile `{prof.name}`"
             f"{' (inner validation)' if inner_val else ''}", "", *smoke_note(prof.data, prof.image_size),
             _setup(prof, folded, folds, k, pseudo_test, inner_val, preds[head][0]), "",
             headline(summary, ensemble, head, head_eval, comparable=not is_synthetic(prof.data)), ""]
    lines += adults_section(head, head_eval)
    tested = _tested_rows(folded, folds)
    confounds = confound_report(tested)
    lines += shortcut_warning([w for w in confounds.warnings if w.startswith("[test]")])
    lines += tables_section(tables, "pooled out-of-fold predictions of all folds, mean ± sd over seeds "
                            "[95 % CI], final epoch")
    lines += ["### Accuracy per fold", "", markdown_table(per_fold, digits=3), ""]
    lines += figures_section(has_abc)
    lines += ["## Paired tests (McNemar on the pooled predictions)", "",
              "Every pooled image compared between two cells (seed ensembles); exact two-sided McNemar "
              f"p-values, Holm over the table; \"better\" only where p (Holm) < {ALPHA}. \"80 % power for\": "
              "the smallest difference the test would detect at this discordance.", "",
              tests_markdown(ensemble, per_seed), ""]
    lines += optimisation_section(grid, folded, folds, out)
    if ablations:
        lines += _ablation_section(prof, folders, folds, inner_val, loss, preds.get((HEADLINE[0], loss)), out)
    mitigated: Frames = {}
    if mitigations:
        section, mitigated = _mitigation_section(prof, folders, folds, inner_val, loss,
                                                 preds.get((HEADLINE[0], loss)), out)
        lines += section
    if sources:
        lines += _lso_section(prof, folders, preds, mitigated, out)
    splits = {f"fold {f}": split_dir / f"fold{f}{'-inner' if inner_val else ''}.csv" for f in folds}
    splits.update({f"without {s}": split_dir / f"without-{s}.csv" for s in sources})
    leaks = _leak_rows(splits)
    lines += ["## Data", "", markdown_table(fold_table(folded), index=True), "", confounds.to_markdown(), "",
              "### Leak check per split", "", markdown_table(leaks), ""]
    lines += breakdown_section(head, head_eval)
    total = time.perf_counter() - start
    lines += [f"Wall time of this call {duration(total)} ({duration(train_seconds)} of it training).", ""]
    lines += provenance(prof, timings, total) + statistics_notes(prof, unit="folds")
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    write_json({"profile": prof.to_dict(), "cv": k, "folds": list(folds), "pseudo_test": pseudo_test,
                "inner_val": inner_val, "versions": versions(), "timings_s": timings,
                "leaks": leaks, "total_s": time.perf_counter() - start}, out / "provenance.json")
    return path


def _ablation_section(prof: Profile, folders: dict[GridRun, Path], folds: Sequence[int], inner_val: bool,
                      loss: str, default: list[pd.DataFrame] | None, out: Path) -> list[str]:
    runs = group(folders, lambda r: r.variant if r.variant in ABLATIONS and r.inner == inner_val
                 and r.fold in folds and r.loss == loss and not r.held_out else None)
    if default is None:
        default = pooled_predictions(_grid(folders, folds, inner_val)[("pepx_resnet", loss)])
    table = ablation_tests(default, {name: pooled_predictions(r) for name, r in runs.items()}, prof.n_boot)
    write_csv(table, out / "ablations.csv", index=False)
    missing = [name for name in ABLATIONS if name not in runs]
    not_run = [f"Not run here: {', '.join(missing)} (`--ablations` named the others).", ""] if missing else []
    return ["## Ablations of the paper's choices", "",
            f"PEPX-ResNet + {loss} as specified (default) against one change at a time, same folds, budget "
            "and seeds; pooled predictions compared image by image (McNemar, Holm over this table). Positive "
            "differences mean the paper's choice helps.", "", ablation_markdown(table), "", *not_run]


def _mitigation_section(prof: Profile, folders: dict[GridRun, Path], folds: Sequence[int], inner_val: bool,
                        loss: str, default: list[pd.DataFrame] | None, out: Path) -> tuple[list[str], Frames]:
    """The mitigation table, and the pooled predictions of each mitigation cell ``(model, loss, variant)``."""
    runs = group(folders, lambda r: r.variant if is_mitigation(r.variant) and r.inner == inner_val
                 and r.fold in folds and r.loss == loss and not r.held_out else None)
    if default is None:
        default = pooled_predictions(_grid(folders, folds, inner_val)[("pepx_resnet", loss)])
    pooled = {name: pooled_predictions(r) for name, r in runs.items()}
    table = mitigation_tests(default, pooled, prof.n_boot)
    write_csv(table, out / "mitigations.csv", index=False)
    lines = ["## Mitigations of source shortcuts", "",
             f"PEPX-ResNet + {loss} with the profile's recipe (default) against the same network with each "
             "mitigation, same folds, budget and seeds, pooled out-of-fold. Each cell: the mitigated figure "
             "(mitigated − default [95 % paired patient-bootstrap CI]); accuracy also by exact McNemar, Holm "
             "over this table. What each changes:", "",
             *[f"- `{name}`: {describe_variant(name)}" for name in pooled], "",
             mitigation_markdown(table), ""]
    return lines, {("pepx_resnet", loss, name): frames for name, frames in pooled.items()}


def _lso_section(prof: Profile, folders: dict[GridRun, Path], preds: Frames, mitigated: Frames,
                 out: Path) -> list[str]:
    """``mitigated``: pooled predictions of mitigation cells ``(model, loss, variant)`` (their in-distribution
    accuracy for leave-source-out runs of the same variant)."""
    held = group(folders, lambda r: (r.held_out, (r.model, r.loss, r.variant) if r.variant
                                     else (r.model, r.loss)) if r.held_out else None)
    frames = {key: [read_predictions(p) for p in runs.values()] for key, runs in held.items()}
    table = lso_table(frames, {**preds, **mitigated}, prof.n_boot)
    write_csv(table, out / "leave_source_out.csv", index=False)
    return ["## Leave-source-out (external sources)", "",
            "Each source with two or more classes held out of training and tested whole; beside it, the same "
            "network's in-distribution accuracy on that source from the cross-validated grid (its patients "
            "unseen, its hospital seen). The drop is how much of the score came from knowing the hospital.",
            "", lso_markdown(table), "", lso_sentence(table), ""]
