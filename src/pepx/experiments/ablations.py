"""Ablations of the paper's choices: each PEPX-ResNet switch of `profiles.ABLATIONS` trained on the same folds
with the same budget and loss as the default PEPX-ResNet, and compared with it image by image.

Each row: pooled out-of-fold accuracy of the default and of the ablation, their difference (default minus
ablation, so positive = the paper's choice helps) with its patient-bootstrap CI, the exact McNemar p-value,
Holm over the ablation table, the smallest difference the test had 80 % power to detect, and one sentence
saying whether the choice matters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pepx.errors import ConfigError
from pepx.evaluation.metrics import mean_predictions
from pepx.evaluation.report import fmt_ci
from pepx.evaluation.stats import ALPHA, pairwise_tests
from pepx.experiments.comparisons import fmt_p, points
from pepx.experiments.grid import GridRun, plan
from pepx.experiments.profiles import ABLATIONS
from pepx.fileio import write_csv
from pepx.markdown import markdown_table

DEFAULT = "default"


def ablation_names(names: Sequence[str] | None = None) -> list[str]:
    """``names`` checked against `profiles.ABLATIONS` (``None`` or empty: all of them), in the order given."""
    if not names:
        return list(ABLATIONS)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ConfigError(f"unknown ablation {', '.join(unknown)}: choose among {', '.join(ABLATIONS)}")
    return list(dict.fromkeys(names))


def ablation_runs(loss: str, seeds: Sequence[int], folds: Sequence[int], inner: bool = False,
                  variants: Sequence[str] | None = None) -> list[GridRun]:
    """The default PEPX-ResNet and the ablations ``variants`` (default: all), on ``folds`` with ``loss``."""
    runs = plan(["pepx_resnet"], [loss], seeds, folds, inner=inner)
    for variant in ablation_names(variants):
        runs += plan(["pepx_resnet"], [loss], seeds, folds, variant=variant, inner=inner)
    return runs


def ablation_sentence(row: pd.Series, alpha: float = ALPHA) -> str:
    """Whether the paper's choice matters, from one row of :func:`ablation_tests`."""
    ci = f"{points(row['diff'])} points [{points(row['diff_low'])}, {points(row['diff_high'])}]"
    if row["p_holm"] < alpha:
        if row["diff"] > 0:
            return f"Matters: the paper's choice is better by {ci}."
        return f"Matters, against the paper: the ablation is better by {-100 * row['diff']:.1f} points."
    if math.isnan(row["detectable"]):
        return f"No detectable effect ({ci}); too few discordant images to detect any difference."
    return (f"No detectable effect ({ci}); a difference of {points(row['detectable'], sign=False)} points or "
            "more would have been detected with 80 % power.")


def ablation_tests(default: Sequence[pd.DataFrame], variants: dict[str, Sequence[pd.DataFrame]],
                   n_boot: int) -> pd.DataFrame:
    """Default vs each ablation on the pooled predictions (seed ensembles); Holm over the ablations.

    ``default`` and each of ``variants`` hold one pooled frame per seed. Columns of
    `pepx.evaluation.stats.pairwise_tests` plus ``ablation, what, sentence``.
    """
    if not variants:
        return pd.DataFrame()
    frames = {DEFAULT: mean_predictions(list(default)),
              **{name: mean_predictions(list(f)) for name, f in variants.items()}}
    table = pairwise_tests(frames, [(DEFAULT, name) for name in variants], n_boot=n_boot)
    table.insert(0, "ablation", list(variants))
    table.insert(1, "what", [ABLATIONS[name][1] for name in variants])
    table["sentence"] = [ablation_sentence(row) for _, row in table.iterrows()]
    return table


def ablation_markdown(table: pd.DataFrame) -> str:
    """The ablation table, one sentence per row."""
    if table.empty:
        return "No ablation was run."
    frame = pd.DataFrame({
        "ablation": table["ablation"], "what changes": table["what"], "acc default": table["acc_a"],
        "acc ablated": table["acc_b"],
        "default − ablated [95 % CI]": [
            fmt_ci(d, lo, hi) for d, lo, hi in zip(table["diff"], table["diff_low"], table["diff_high"],
                                                   strict=True)],
        "p (Holm)": table["p_holm"].map(fmt_p), "does the choice matter?": table["sentence"],
    })
    return markdown_table(frame, digits=4)


def ablation_section(default: Sequence[pd.DataFrame], variants: dict[str, Sequence[pd.DataFrame]], loss: str,
                     n_boot: int, out: Path) -> list[str]:
    """The report section: the ablation table (``ablations.csv``) of ``variants`` (ablation -> pooled frames
    per seed) against ``default``, and what was compared."""
    table = ablation_tests(default, variants, n_boot)
    write_csv(table, out / "ablations.csv", index=False)
    missing = [name for name in ABLATIONS if name not in variants]
    not_run = [f"Not run here: {', '.join(missing)} (`--ablations` named the others).", ""] if missing else []
    return ["## Ablations of the paper's choices", "",
            f"PEPX-ResNet + {loss} as specified (default) against one change at a time, same folds, budget "
            "and seeds; pooled predictions compared image by image (McNemar, Holm over this table). Positive "
            "differences mean the paper's choice helps.", "", ablation_markdown(table), "", *not_run]
