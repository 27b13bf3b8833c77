"""Is PEPX-ResNet "easier to optimise" (the paper's claim)? Curves and a paired test at a fixed early epoch.

Every run's ``metrics.csv`` holds its training loss and test accuracy after each epoch; predictions are
stored for the final epoch only. The test therefore pairs **folds**, not images: per fold, PEPX-ResNet's value
at epoch ``e`` minus the other network's (same loss, same fold's training and test images, seeds averaged
first), over the K folds. K-fold differences are not independent (the training sets overlap), so the t-test
uses Nadeau & Bengio's (2003) corrected variance ``(1/K + n_test/n_train) s^2`` instead of ``s^2 / K``; Holm
over the table.
(McNemar on pooled images would need every fold's predictions at epoch ``e``: a full inference pass per run
from its ``weights/epoch_<e>.safetensors``, which the report does not do.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pepx.data.folds import TRAIN_ONLY
from pepx.evaluation.bootstrap import LEVEL
from pepx.evaluation.stats import ALPHA, holm
from pepx.experiments.comparisons import HEADLINE, Cell, cell_label, fmt_p, points
from pepx.experiments.figures import optimisation_figure
from pepx.experiments.grid import GridRun, read_metrics
from pepx.fileio import write_csv
from pepx.markdown import markdown_table

#: The early epoch at which the networks are compared (the last shared epoch for shorter runs).
EARLY_EPOCH = 3
#: ``metrics.csv`` column -> (name in the report, +1 when higher is better, -1 when lower is).
MEASURES: dict[str, tuple[str, int]] = {"test_acc": ("test accuracy", 1), "train_loss": ("training loss", -1)}
FoldMetrics = dict[Cell, dict[int, list[pd.DataFrame]]]


def fold_metrics(grid: Mapping[Cell, Mapping[GridRun, Path]]) -> FoldMetrics:
    """Per cell and fold, the per-epoch metrics frames of its seeds."""
    out: FoldMetrics = {}
    for cell, runs in grid.items():
        for run, path in runs.items():
            out.setdefault(cell, {}).setdefault(int(run.fold or 0), []).append(read_metrics(path))
    return out


def early_epoch(folds: FoldMetrics, epoch: int = EARLY_EPOCH) -> int:
    """``epoch``, or the last epoch every run reached where that is earlier."""
    last = min(int(f["epoch"].max()) for per_fold in folds.values() for frames in per_fold.values()
               for f in frames)
    return min(epoch, last)


def holdout_ratio(folded: pd.DataFrame, folds: Sequence[int]) -> float:
    """Mean over ``folds`` of n_test / n_train (training-only rows count as training)."""
    n_test = np.array([(folded["fold"] == k).sum() for k in folds], dtype=float)
    return float(np.mean(n_test / (len(folded) - n_test)))


def corrected_t(diffs: Sequence[float], ratio: float,
                level: float = LEVEL) -> tuple[float, float, float, float]:
    """Mean of per-fold differences, its CI and the two-sided p of Nadeau & Bengio's corrected paired t-test
    (variance ``(1/K + ratio) s^2``, K - 1 degrees of freedom); NaN for CI and p with fewer than 2 folds."""
    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    se = float(np.sqrt((1 / len(d) + ratio) * d.var(ddof=1)))
    if se == 0:
        return mean, mean, mean, (1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1)) * se
    return mean, mean - half, mean + half, float(2 * stats.t.sf(abs(mean) / se, len(d) - 1))


def _at(frames: list[pd.DataFrame], column: str, epoch: int) -> float:
    """Mean over seeds of ``column`` at ``epoch``."""
    return float(np.mean([f.set_index("epoch").loc[epoch, column] for f in frames]))


def early_epoch_tests(folds: FoldMetrics, epoch: int, ratio: float, model: str = HEADLINE[0],
                      alpha: float = ALPHA, level: float = LEVEL) -> pd.DataFrame:
    """``model`` against every other network under the same loss, on each of ``MEASURES`` at ``epoch``, paired
    over the folds both ran. Columns: ``a, b, measure, epoch, n_folds, mean_a, mean_b, diff, diff_low,
    diff_high, p, p_holm, verdict`` (Holm over the table)."""
    rows = []
    for a in (c for c in folds if c[0] == model):
        for b in (c for c in folds if c[1] == a[1] and c[0] != model):
            shared = sorted(set(folds[a]) & set(folds[b]))
            for column in MEASURES:
                va = [_at(folds[a][k], column, epoch) for k in shared]
                vb = [_at(folds[b][k], column, epoch) for k in shared]
                diff, low, high, p = corrected_t(np.subtract(va, vb), ratio, level)
                rows.append(dict(a=cell_label(a), b=cell_label(b), measure=column, epoch=epoch,
                                 n_folds=len(shared), mean_a=float(np.mean(va)), mean_b=float(np.mean(vb)),
                                 diff=diff, diff_low=low, diff_high=high, p=p))
    table = pd.DataFrame(rows, columns=["a", "b", "measure", "epoch", "n_folds", "mean_a", "mean_b", "diff",
                                        "diff_low", "diff_high", "p"])
    tested = table["p"].notna()
    table["p_holm"] = np.nan
    if tested.any():
        table.loc[tested, "p_holm"] = holm(table.loc[tested, "p"])
    table["verdict"] = [_verdict(r, alpha) for r in table.itertuples()]
    return table


def _verdict(row, alpha: float) -> str:
    if np.isnan(row.p_holm):
        return f"not tested ({row.n_folds} fold)"
    if row.p_holm >= alpha:
        return "no significant difference"
    better = row.a if row.diff * MEASURES[row.measure][1] > 0 else row.b
    return f"{better} {'ahead' if row.measure == 'test_acc' else 'lower loss'}"


def tests_markdown(table: pd.DataFrame, level: float = LEVEL) -> str:
    """The early-epoch tests as Markdown (accuracy differences in points, losses as they are)."""
    def diff_text(r) -> str:
        if r.measure == "test_acc":
            return f"{points(r.diff)} [{points(r.diff_low)}, {points(r.diff_high)}] points"
        return f"{r.diff:+.3f} [{r.diff_low:+.3f}, {r.diff_high:+.3f}]"
    frame = pd.DataFrame({
        "A": table["a"], "B": table["b"], "measure": table["measure"].map(lambda m: MEASURES[m][0]),
        "epoch": table["epoch"], "folds": table["n_folds"], "A (mean)": table["mean_a"],
        "B (mean)": table["mean_b"],
        f"A − B [{int(level * 100)} % CI]": [diff_text(r) for r in table.itertuples()],
        "p (corrected t)": table["p"].map(lambda p: "–" if np.isnan(p) else fmt_p(p)),
        "p (Holm)": table["p_holm"].map(lambda p: "–" if np.isnan(p) else fmt_p(p)),
        "verdict": table["verdict"],
    })
    return markdown_table(frame, digits=3)


def optimisation_section(grid: Mapping[Cell, Mapping[GridRun, Path]], folded: pd.DataFrame,
                         folds: Sequence[int], out: Path, epoch: int = EARLY_EPOCH) -> list[str]:
    """The report section: the figure (``figure_optimisation.png``), the test table (``optimisation.csv``) and
    what was tested and why."""
    per_fold = fold_metrics(grid)
    cells = {cell: [f for frames in by_fold.values() for f in frames] for cell, by_fold in per_fold.items()}
    e = early_epoch(per_fold, epoch)
    last = max(int(f["epoch"].max()) for frames in cells.values() for f in frames)
    table = early_epoch_tests(per_fold, e, holdout_ratio(folded, folds))
    tested = (tests_markdown(table) if len(table)
              else "Nothing to compare: no other network was trained with PEPX-ResNet's loss on these folds.")
    write_csv(table, out / "optimisation.csv", index=False)
    optimisation_figure(cells, out / "figure_optimisation.png", unit="folds", mark_epoch=e)
    short = " (the last: these runs are too short for an early epoch)" if e == last else ""
    n_pseudo = int((folded["fold"] == TRAIN_ONLY).sum())
    pseudo = f"; n_train counts the {n_pseudo} training-only rows" if n_pseudo else ""
    return ["## Is PEPX-ResNet easier to optimise?", "",
            "The paper calls PEPX-ResNet easier to optimise. Training loss (mean over an epoch's augmented "
            "batches) and test accuracy after every epoch, mean over folds (band: min–max over folds and "
            "seeds), one row per loss (the losses differ in scale); the dotted line marks the tested epoch.",
            "",
            "![training loss and test accuracy per epoch](figure_optimisation.png)", "",
            f"Paired test at epoch {e} of {last}{short}: per fold, PEPX-ResNet's value minus the other "
            "network's (same loss, same training and test images; seeds averaged first), over the folds: the "
            f"mean difference with its {int(LEVEL * 100)} % CI and a two-sided t-test with Nadeau & Bengio's "
            "correction for the overlap of the folds' training sets (variance × (1/K + n_test/n_train) "
            f"instead of 1/K{pseudo}), Holm over the table. Folds, "
            "not images, because predictions are stored for the final epoch only (McNemar on the pooled "
            "images is the paired test above, at the final epoch). With K folds the test has K − 1 degrees "
            "of freedom: only large, consistent differences can show.", "",
            tested, ""]
