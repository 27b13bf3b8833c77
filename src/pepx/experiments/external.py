"""Leave-source-out: train without one hospital's images, test on all of them.

Which sources are held out, and their splits: `pepx.data.folds` (``lso_sources``, ``lso_split``). The
model trains on every other labelled image (pseudo-id rows included, unless they are the held-out source)
and predicts every image of the held-out source. Beside it stands the same network's in-distribution accuracy
on that source from the cross-validated grid (its patients unseen, its hospital seen): the gap measures how
much of the score is recognising the hospital.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASSES
from pepx.evaluation.breakdown import breakdown
from pepx.evaluation.metrics import mean_predictions
from pepx.evaluation.report import fmt_ci
from pepx.experiments.comparisons import cell_label, points
from pepx.experiments.grid import GridRun, plan
from pepx.fileio import write_csv
from pepx.markdown import DASH, markdown_table

#: Networks trained per held-out source by default: the paper's and the strongest baseline of the cpu grid.
LSO_MODELS: tuple[str, ...] = ("pepx_resnet", "resnet18")


def lso_runs(models: Sequence[str], loss: str, seeds: Sequence[int], sources: Sequence[str],
             variants: Sequence[str] = ("",)) -> list[GridRun]:
    """One run per network, seed, held-out source and variant (``""``: the profile's recipe; e.g.
    ``unmitigated`` beside an adopted recipe)."""
    return [run for source in sources for variant in variants
            for run in plan(models, [loss], seeds, held_out=source, variant=variant)]


def lso_label(cell: tuple[str, ...]) -> str:
    """``PEPX-ResNet + focal``, with `` (variant)`` for a variant cell ``(model, loss, variant)``."""
    variant = cell[2] if len(cell) > 2 else ""
    return cell_label(cell[:2]) + (f" ({variant})" if variant else "")


def _source_row(frame: pd.DataFrame, source: str, n_boot: int) -> pd.Series | None:
    rows = frame[frame["source"].astype(str) == source]
    return None if rows.empty else breakdown(rows, "source", n_boot=n_boot).iloc[0]


def lso_table(held_out: dict[tuple[str, str], Sequence[pd.DataFrame]],
              in_distribution: dict[tuple[str, str], Sequence[pd.DataFrame]], n_boot: int) -> pd.DataFrame:
    """One row per (held-out source, cell): class counts, held-out accuracy, macro-F1 and recalls with CIs,
    and the cell's in-distribution accuracy on that source (NaN where the CV never tested it).

    ``held_out``: ``(source, cell) -> one prediction frame per seed``; ``in_distribution``: ``cell -> pooled
    out-of-fold frames per seed`` (may be empty). A cell is ``(model, loss)`` or ``(model, loss, variant)``.
    """
    rows = []
    for (source, cell), frames in held_out.items():
        out = _source_row(mean_predictions(list(frames)), source, n_boot)
        inside = (_source_row(mean_predictions(list(in_distribution[cell])), source, n_boot)
                  if cell in in_distribution else None)
        row = {"source": source, "cell": lso_label(cell), **{f"n_{c}": out[f"n_{c}"] for c in CLASSES}}
        for name in ("accuracy", "macro_f1", *(f"recall_{c}" for c in CLASSES)):
            row[name], row[f"{name}_low"], row[f"{name}_high"] = (out[name], out[f"{name}_low"],
                                                                  out[f"{name}_high"])
        for stat in ("", "_low", "_high"):
            row[f"in_dist_accuracy{stat}"] = np.nan if inside is None else inside[f"accuracy{stat}"]
        rows.append(row)
    return pd.DataFrame(rows)


def lso_markdown(table: pd.DataFrame) -> str:
    """The leave-source-out table, in-distribution accuracy beside the held-out one."""
    if table.empty:
        return "No source was held out."
    def ci(name: str) -> list[str]:
        return [fmt_ci(v, lo, hi) for v, lo, hi in
                zip(table[name], table[f"{name}_low"], table[f"{name}_high"], strict=True)]
    frame = pd.DataFrame({
        "held-out source": table["source"], "network": table["cell"],
        "images (N / P / C)": [" / ".join(str(r[f"n_{c}"]) for c in CLASSES) for _, r in table.iterrows()],
        "accuracy, source unseen": ci("accuracy"), "macro-F1": ci("macro_f1"),
        "accuracy, in distribution (CV)": ci("in_dist_accuracy"),
        "drop": [DASH if np.isnan(i) else points(i - a) for a, i in
                 zip(table["accuracy"], table["in_dist_accuracy"], strict=True)],
    })
    return markdown_table(frame, digits=3)


def lso_sentence(table: pd.DataFrame) -> str:
    """One sentence: the mean held-out accuracy against the in-distribution one, per network."""
    parts = []
    for cell, rows in table.groupby("cell", sort=False):
        paired = rows.dropna(subset=["in_dist_accuracy"])
        text = f"{cell}: mean accuracy on an unseen source {rows['accuracy'].mean():.3f}"
        if len(paired):
            text += (f" vs {paired['in_dist_accuracy'].mean():.3f} on the same sources seen in training "
                     f"({len(paired)} of {len(rows)} sources tested both ways)")
        parts.append(text)
    return "; ".join(parts) + "." if parts else ""


def lso_section(held_out: dict[tuple[str, str], Sequence[pd.DataFrame]],
                in_distribution: dict[tuple[str, str], Sequence[pd.DataFrame]], n_boot: int, out: Path
                ) -> list[str]:
    """The report section: the leave-source-out table (``leave_source_out.csv``, `lso_table`) and its
    reading."""
    table = lso_table(held_out, in_distribution, n_boot)
    write_csv(table, out / "leave_source_out.csv", index=False)
    return ["## Leave-source-out (external sources)", "",
            "Each source with two or more classes held out of training and tested whole; beside it, the same "
            "network's in-distribution accuracy on that source from the cross-validated grid (its patients "
            "unseen, its hospital seen). The drop is how much of the score came from knowing the hospital.",
            "", lso_markdown(table), "", lso_sentence(table), ""]
