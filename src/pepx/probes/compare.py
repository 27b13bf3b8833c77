"""`pepx audit CV --compare VARIANT`: the model probes of two sets of runs of one `pepx reproduce --cv` folder
(e.g. the adopted recipe and its ``unmitigated`` variant) on the films both scored, side by side.

Both sets of runs are trained on the same folds, so every test film is scored once by each. Each measure is
given for both with its 95 % interval, and their difference (this - compared) with the interval of the paired
statistic: both sides see the same patient resamples (within each true class). Measures:

- the source probe on each model's penultimate features: balanced accuracy and AUROC;
- untouched accuracy and COVID-19 recall; accuracy with the lungs blanked;
- for each change of the invariance probe, the change of accuracy and of COVID-19 recall it causes
  (changed - untouched): a model that leans less on the look of a hospital's films changes less.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from pepx.evaluation.bootstrap import patient_resamples
from pepx.evaluation.metrics import batched_metrics
from pepx.evaluation.plots import save
from pepx.markdown import markdown_table
from pepx.probes.model_probes import BLANKED, UNTOUCHED
from pepx.probes.report import ci
from pepx.probes.results import ProbeResult
from pepx.probes.stats import interval, paired_probe_scores

COVID_RECALL = "recall_COVID-19"
CHANCE = 1.0 / 3.0  # a disease model's accuracy once it has nothing left to read
NAMES = {"accuracy": "accuracy", COVID_RECALL: "COVID-19 recall"}


def _measures(conditions: list[str]) -> list[tuple[str, str, str]]:
    """(measure name, condition, metric); a changed condition's measure is its change from untouched."""
    out = [(f"{NAMES[m]} (untouched)", UNTOUCHED, m) for m in NAMES]
    out += [(f"accuracy, {BLANKED}", BLANKED, "accuracy")] if BLANKED in conditions else []
    out += [(f"{NAMES[m]} change after {c}", c, m) for c in conditions if c != BLANKED for m in NAMES]
    return out


def _row(measure: str, a: tuple[float, np.ndarray], b: tuple[float, np.ndarray],
         ideal: float = np.nan) -> dict[str, object]:
    """Both sides with intervals, their paired difference, and - where the measure has a value that means
    "no shortcut" (``ideal``: chance, or no change) - ``closer``: |this - ideal| - |compared - ideal| (< 0:
    this one is nearer it), its interval from the same resamples."""
    this, other = interval(*a), interval(*b)
    diff = interval(a[0] - b[0], a[1] - b[1])
    closer = interval(abs(a[0] - ideal) - abs(b[0] - ideal), np.abs(a[1] - ideal) - np.abs(b[1] - ideal)) \
        if not np.isnan(ideal) else {"value": np.nan, "low": np.nan, "high": np.nan}
    return {"measure": measure, "ideal": ideal, "this": this["value"], "this_low": this["low"],
            "this_high": this["high"], "compared": other["value"], "compared_low": other["low"],
            "compared_high": other["high"], "diff": diff["value"], "diff_low": diff["low"],
            "diff_high": diff["high"], "closer": closer["value"], "closer_low": closer["low"],
            "closer_high": closer["high"]}


def compare_models(this: pd.DataFrame, other: pd.DataFrame, conditions: list[str], n_boot: int,
                   seed: int = 0) -> tuple[pd.DataFrame, int]:
    """One row per measure of `_measures` for two model-prediction frames (`Scores.frame`: ``path``,
    ``patient_id``, ``y_true``, ``pred_<condition>``), on the films both hold; returns it and that count."""
    cols = [f"pred_{c}" for c in [UNTOUCHED, *conditions]]
    both = this.merge(other[["path", *cols]], on="path", suffixes=("", "_other"))
    y = torch.tensor(both["y_true"].to_numpy(np.int64))
    index = patient_resamples(both["patient_id"].astype(str).tolist(), both["y_true"].tolist(),
                              n_boot=n_boot, seed=seed)

    def metrics(suffix: str) -> dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        out = {}
        for c in [UNTOUCHED, *conditions]:
            p = torch.tensor(both[f"pred_{c}{suffix}"].to_numpy(np.int64))
            out[c] = (batched_metrics(y, p), batched_metrics(y, p, index=index))
        return out

    sides = [metrics(""), metrics("_other")]
    rows = []
    for measure, cond, metric in _measures(conditions):
        values = []
        for side in sides:
            point, boot = side[cond][0][metric][0], side[cond][1][metric]
            if cond not in (UNTOUCHED, BLANKED):
                point, boot = point - side[UNTOUCHED][0][metric][0], boot - side[UNTOUCHED][1][metric]
            values.append((float(point), boot))
        ideal = np.nan if cond == UNTOUCHED else CHANCE if cond == BLANKED else 0.0
        rows.append(_row(measure, *values, ideal=ideal))
    return pd.DataFrame(rows), len(both)


def compare_features(this: ProbeResult, other: ProbeResult, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Both features probes' balanced accuracy and AUROC on the films both probed, over the sources both
    probed (empty when they share fewer than two)."""
    classes = [c for c in this.classes if c in other.classes]
    keep = ["path", "patient_id", "probe_target", *[f"p_{c}" for c in classes]]
    both = this.predictions[keep].merge(other.predictions[keep], on=["path", "patient_id", "probe_target"],
                                        suffixes=("", "_other"))
    both = both[both["probe_target"].isin(classes)]
    if len(classes) < 2 or both.empty:
        return pd.DataFrame()
    y = both["probe_target"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = [both[[f"p_{c}{s}" for c in classes]].to_numpy() for s in ("", "_other")]
    scores = paired_probe_scores(y, probs, both["patient_id"].astype(str).tolist(), n_boot, seed)
    names = {"balanced_accuracy": ("balanced accuracy", 1 / len(classes)), "auroc": ("AUROC", 0.5)}
    return pd.DataFrame([_row(f"features probe {name}", *scores[metric], ideal=ideal)
                         for metric, (name, ideal) in names.items()])


def comparison_markdown(table: pd.DataFrame, this: str, other: str) -> str:
    rows = [{"measure": r.measure,
             f"{this} [95 % CI]": ci({"value": r.this, "low": r.this_low, "high": r.this_high}),
             f"{other} [95 % CI]": ci({"value": r.compared, "low": r.compared_low, "high": r.compared_high}),
             "difference [95 % CI]": ci({"value": r.diff, "low": r.diff_low, "high": r.diff_high}),
             "no shortcut at": r.ideal,
             f"distance to it, {this} - {other} [95 % CI]": ci({"value": r.closer, "low": r.closer_low,
                                                                "high": r.closer_high}),
             "distance CI excludes 0": "" if np.isnan(r.closer)
             else bool(r.closer_low > 0 or r.closer_high < 0),
             } for r in table.itertuples()]
    return markdown_table(pd.DataFrame(rows))


def plot_comparison(table: pd.DataFrame, path: Path, this: str, other: str, title: str) -> Path:
    """Each measure but the untouched ones, both sides, with 95 % CIs."""
    part = table[~table["measure"].str.endswith("(untouched)")].reset_index(drop=True)
    fig = Figure(figsize=(max(6.0, 1.1 * len(part) + 2), 4.2))
    ax = fig.add_subplot()
    for j, (side, label) in enumerate((("this", this), ("compared", other))):
        v, lo, hi = part[side], part[f"{side}_low"], part[f"{side}_high"]
        ax.bar(np.arange(len(part)) + (j - 0.5) * 0.4, v, 0.4, label=label,
               yerr=[(v - lo).clip(lower=0), (hi - v).clip(lower=0)], capsize=2)
    ax.axhline(0, color="black", linewidth=0.6)
    for i, ideal in enumerate(part["ideal"]):  # the value without a shortcut: chance, or no change
        ax.hlines(ideal, i - 0.45, i + 0.45, colors="grey", linestyles="dashed", linewidth=1,
                  label="no shortcut" if i == 0 else None)
    ax.set_xticks(range(len(part)), [m.replace(" change after ", "\nchange after\n").replace(", ", ",\n")
                                     .replace("probe ", "probe\n") for m in part["measure"]], fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save(fig, path)
