"""Paired comparisons of classifiers on the same test images: exact McNemar tests with Holm's correction.

McNemar's test uses only the discordant images: ``b`` = A right and B wrong, ``c`` = A wrong and B right.
Under "equally accurate", ``b ~ Binomial(b + c, 1/2)``; the p-value is the exact two-sided binomial test
(``scipy.stats.binomtest``). No continuity correction is needed (that belongs to the chi-square
approximation); the exact test is conservative, so ``mid_p=True`` offers the mid-p variant (exact p minus the
probability of the observed ``min(b, c)``). Default: exact. Identical predictions give ``b = c = 0``, p = 1.

Images are treated as independent pairs; where a patient has several test images this overstates the evidence
a little, so every comparison also carries the accuracy difference with a patient-bootstrap 95 % CI.

Each comparison also gets ``detectable``: the smallest accuracy difference the test had 80 % power to detect
at its observed discordance (`pepx.evaluation.power`), at the Bonferroni level ``alpha / len(pairs)`` - the
level Holm's correction asks of the most significant comparison - so a "no significant difference" can be read
as "no difference of at least ``detectable``, probably", and not as "equal".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binom, binomtest

from pepx.evaluation.bootstrap import LEVEL, N_BOOT, align_frames, patient_resamples, percentile_interval
from pepx.evaluation.metrics import batched_metrics, frame_arrays
from pepx.evaluation.power import detectable_difference

ALPHA = 0.05


@dataclass(frozen=True)
class McNemarResult:
    """Discordant counts and the two-sided p-value."""

    b: int  # A right, B wrong
    c: int  # A wrong, B right
    pvalue: float
    method: str


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], mid_p: bool = False) -> McNemarResult:
    """Exact (or mid-p) McNemar test from per-image correctness of two classifiers on the same images."""
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 1.0, "mid-p" if mid_p else "exact")
    p = binomtest(b, n, 0.5, alternative="two-sided").pvalue
    if mid_p:
        p = p - binom.pmf(min(b, c), n, 0.5)
    return McNemarResult(b, c, float(min(1.0, p)), "mid-p" if mid_p else "exact")


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control across the comparisons)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def pairwise_tests(frames: Mapping[str, pd.DataFrame], pairs: Sequence[tuple[str, str]], *,
                   mid_p: bool = False, alpha: float = ALPHA, n_boot: int = N_BOOT, seed: int = 0,
                   level: float = LEVEL) -> pd.DataFrame:
    """McNemar test for each ``(a, b)`` pair of prediction frames (same images), Holm-adjusted over ``pairs``.

    Columns: ``a, b, n, acc_a, acc_b, diff, diff_low, diff_high, b_only_a, c_only_b, p, p_holm, detectable,
    verdict``. The verdict names a winner only where ``p_holm < alpha``; ``detectable`` is the smallest
    difference with 80 % power at level ``alpha / len(pairs)`` (NaN: none up to the discordance).
    """
    columns = ["a", "b", "n", "acc_a", "acc_b", "diff", "diff_low", "diff_high", "b_only_a", "c_only_b", "p",
               "p_holm", "detectable", "verdict"]
    if not pairs:
        return pd.DataFrame(columns=columns)
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    aligned = dict(zip(names, align_frames([frames[n] for n in names]), strict=True))
    first = aligned[names[0]]
    index = patient_resamples(first["patient_id"], first["y_true"], n_boot=n_boot, seed=seed)
    correct, acc, acc_boot = {}, {}, {}
    for name, f in aligned.items():
        y_true, y_pred, _ = frame_arrays(f)
        correct[name] = (y_true == y_pred).numpy()
        acc[name] = float(correct[name].mean())
        acc_boot[name] = batched_metrics(y_true, y_pred, index=index)["accuracy"]
    rows = []
    for a, b in pairs:
        res = mcnemar(correct[a], correct[b], mid_p=mid_p)
        low, high = percentile_interval(acc_boot[a] - acc_boot[b], level)
        n = len(correct[a])
        rows.append(dict(a=a, b=b, n=n, acc_a=acc[a], acc_b=acc[b], diff=acc[a] - acc[b], diff_low=low,
                         diff_high=high, b_only_a=res.b, c_only_b=res.c, p=res.pvalue,
                         detectable=detectable_difference(n, res.b + res.c, alpha=alpha / len(pairs))))
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"])
    table = table[[c for c in columns if c != "verdict"]]
    table["verdict"] = [
        ((f"{r.a} better" if r.diff > 0 else f"{r.b} better") if r.p_holm < alpha
         else "no significant difference")
        for r in table.itertuples()
    ]
    return table
