"""Which cells of a grid are compared, the paired tests on them, and sentences saying what the tests can tell.

A cell is ``(model, loss)``. Comparisons: every pair of networks under the same loss, then the headline cell
(PEPX-ResNet + focal) against every other cell. Tests run on the seed ensembles (mean probabilities over
seeds) with `pepx.evaluation.stats.pairwise_tests`: exact McNemar, Holm over the table, the patient-bootstrap
CI of the difference and the smallest difference detectable with 80 % power.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import pandas as pd

from pepx.evaluation.metrics import mean_predictions
from pepx.evaluation.report import fmt_ci
from pepx.evaluation.stats import ALPHA, pairwise_tests
from pepx.experiments.paper import paper_value
from pepx.experiments.tables import LOSS_NAMES
from pepx.markdown import markdown_table
from pepx.models.registry import display_name, model_infos

HEADLINE = ("pepx_resnet", "focal")
Cell = tuple[str, str]
Frames = dict[Cell, list[pd.DataFrame]]
NO_DIFFERENCE = "no significant difference"


def cell_label(cell: Cell) -> str:
    """``PEPX-ResNet + focal``."""
    return f"{display_name(cell[0])} + {LOSS_NAMES.get(cell[1], cell[1])}"


def comparison_pairs(cells: Sequence[Cell], headline: Cell = HEADLINE) -> list[tuple[Cell, Cell]]:
    """Every pair of networks under the same loss, then the headline cell against every other cell."""
    pairs = [(a, b) for a, b in combinations(cells, 2) if a[1] == b[1]]
    if headline in cells:
        pairs += [(headline, c) for c in cells
                  if c != headline and (headline, c) not in pairs and (c, headline) not in pairs]
    return pairs


def paired_tests(preds: Frames, n_boot: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """McNemar + Holm on the seed ensembles (mean probabilities), and per seed (seed k vs seed k)."""
    pairs = [(cell_label(a), cell_label(b)) for a, b in comparison_pairs(list(preds))]
    ensemble = pairwise_tests({cell_label(c): mean_predictions(f) for c, f in preds.items()}, pairs,
                              n_boot=n_boot)
    n_seeds = min(len(f) for f in preds.values())
    per_seed = [pairwise_tests({cell_label(c): f[k] for c, f in preds.items()}, pairs, n_boot=n_boot)
                .assign(seed=k) for k in range(n_seeds)] if n_seeds > 1 else []
    return ensemble, (pd.concat(per_seed, ignore_index=True) if per_seed else pd.DataFrame())


def fmt_p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def points(x: float, sign: bool = True) -> str:
    """A difference of accuracies as percentage points: ``+1.2``."""
    return "—" if x is None or math.isnan(x) else (f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}")


def detectable_text(x: float) -> str:
    return "none (too few discordant images)" if math.isnan(x) else f"≥ {points(x, sign=False)} points"


def tests_markdown(ensemble: pd.DataFrame, per_seed: pd.DataFrame | None = None) -> str:
    """The paired-test table: accuracies, difference with CI, discordant counts, p-values, power, verdict."""
    if ensemble.empty:
        return "Nothing to compare: the grid has a single network and loss."
    frame = pd.DataFrame({
        "A": ensemble["a"], "B": ensemble["b"], "acc A": ensemble["acc_a"], "acc B": ensemble["acc_b"],
        "A − B [95 % CI]": [fmt_ci(d, lo, hi) for d, lo, hi in
                            zip(ensemble["diff"], ensemble["diff_low"], ensemble["diff_high"], strict=True)],
        "only A right": ensemble["b_only_a"], "only B right": ensemble["c_only_b"],
        "p (exact)": ensemble["p"].map(fmt_p), "p (Holm)": ensemble["p_holm"].map(fmt_p),
        "80 % power for": ensemble["detectable"].map(detectable_text),
        "verdict": ensemble["verdict"],
    })
    if per_seed is not None and not per_seed.empty:
        verdicts = per_seed.groupby(["a", "b"], sort=False)["verdict"]
        n = per_seed["seed"].nunique()
        frame["per seed (Holm < 0.05)"] = [
            f"{int((v != NO_DIFFERENCE).sum())}/{n}: " + "; ".join(sorted(set(v))) for _, v in verdicts]
    return markdown_table(frame, digits=4)


def paper_gap(a: Cell, b: Cell) -> float | None:
    """The paper's Table 1 accuracy of ``a``'s network minus ``b``'s (None when either is not in the paper or
    the two share a network)."""
    pa, pb = paper_value(1, a[0]), paper_value(1, b[0])
    return None if pa is None or pb is None or a[0] == b[0] else pa - pb


def what_the_test_tells(row: pd.Series, gap: float | None = None, alpha: float = ALPHA) -> str:
    """One sentence on a comparison: the difference with its CI, whether it is significant, the smallest
    difference the test could detect, and what that means for the paper's gap ``gap`` (if given)."""
    diff, low, high, det = row["diff"], row["diff_low"], row["diff_high"], row["detectable"]
    head = (f"{row['a']} vs {row['b']}: {points(diff)} points [{points(low)}, {points(high)}], "
            f"p (Holm) {fmt_p(row['p_holm'])}")
    if row["p_holm"] < alpha:
        winner = row["a"] if diff > 0 else row["b"]
        text = f"{head}: {winner} is better"
        if gap is not None:
            text += (f"; the paper's gap ({points(gap)}) lies inside the interval" if low <= gap <= high
                     else f"; the paper reported {points(gap)}")
        return text + "."
    power = ("the test could not detect any difference (too few discordant images)" if math.isnan(det)
             else f"the test had 80 % power only for differences of {points(det, sign=False)} points or more")
    text = f"{head}: no significant difference; {power}"
    if gap is not None:
        if gap > 0 and high < gap or gap < 0 and low > gap:
            text += f"; a gap as large as the paper's ({points(gap)}) is ruled out by the interval"
        else:
            text += f"; the paper's gap ({points(gap)}) can be neither confirmed nor ruled out"
    return text + "."


def headline_sentences(ensemble: pd.DataFrame, headline: Cell = HEADLINE) -> list[str]:
    """What the paired tests can and cannot tell about the headline cell against the other networks under
    the same loss (and, without those, against every cell it was compared with)."""
    label = cell_label(headline)
    rows = ensemble[ensemble["a"] == label]
    by_label = {cell_label((i.name, headline[1])): (i.name, headline[1]) for i in model_infos()}
    same_loss = rows[rows["b"].isin(by_label)]
    rows = same_loss if len(same_loss) else rows
    return [what_the_test_tells(r, paper_gap(headline, by_label[r["b"]]) if r["b"] in by_label else None)
            for _, r in rows.iterrows()]
