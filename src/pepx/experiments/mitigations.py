"""Mitigations of source shortcuts (issue 15): each switch of `profiles.MITIGATIONS` trained on the same folds
with the same budget as the profile's own PEPX-ResNet recipe, and compared with it image by image.

Accuracy alone hides what a mitigation is for: a network that learned the hospital can score well overall and
still call adult pneumonia COVID-19. Each row therefore sets the clinically relevant figures side by side -
adults-only accuracy, adult pneumonia recall, COVID-19 recall, the share of adult non-COVID films called
COVID-19 - each as mitigated minus default with a paired patient-bootstrap CI (both networks scored on the
same resampled patients), beside the exact McNemar test of overall accuracy (Holm over the table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASSES
from pepx.errors import ConfigError
from pepx.evaluation.bootstrap import LEVEL, align_frames, patient_resamples, percentile_interval
from pepx.evaluation.metrics import mean_predictions
from pepx.evaluation.report import fmt_ci
from pepx.evaluation.stats import pairwise_tests
from pepx.experiments.comparisons import fmt_p
from pepx.experiments.grid import GridRun, plan
from pepx.experiments.profiles import MITIGATIONS, UNMITIGATED, describe_variant, is_mitigation
from pepx.fileio import write_csv
from pepx.markdown import markdown_table

DEFAULT = "default"
_NORMAL, _PNEUMONIA, _COVID = (CLASSES.index(c) for c in ("normal", "pneumonia", "COVID-19"))
#: name -> (images it is computed on, the event counted), both from (y_true, y_pred, adult) arrays.
Subset = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
SHORTCUT_METRICS: dict[str, tuple[Subset, Subset]] = {
    "accuracy": (lambda t, p, a: np.ones_like(t, dtype=bool), lambda t, p, a: t == p),
    "adults-only accuracy": (lambda t, p, a: a, lambda t, p, a: t == p),
    "adult pneumonia recall": (lambda t, p, a: a & (t == _PNEUMONIA), lambda t, p, a: p == _PNEUMONIA),
    "COVID-19 recall": (lambda t, p, a: t == _COVID, lambda t, p, a: p == _COVID),
    "adult non-COVID called COVID-19": (lambda t, p, a: a & (t != _COVID), lambda t, p, a: p == _COVID),
}


def mitigation_names(names: Sequence[str] | None) -> list[str]:
    """``names`` checked (each a mitigation, ``a+b`` a combination, or ``unmitigated``); ``None`` or empty:
    each mitigation alone. Raises `ConfigError` naming an unknown one."""
    if not names:
        return list(MITIGATIONS)
    unknown = [n for n in names if not is_mitigation(n)]
    if unknown:
        raise ConfigError(f"unknown mitigation {', '.join(unknown)}: choose among {', '.join(MITIGATIONS)} "
                          f"(join with + for a combination) or {UNMITIGATED}")
    return list(dict.fromkeys(names))


def mitigation_runs(loss: str, seeds: Sequence[int], folds: Sequence[int], variants: Sequence[str],
                    model: str = "pepx_resnet", inner: bool = False) -> list[GridRun]:
    """One run per mitigation variant, seed and fold (the default recipe's runs are the grid's own)."""
    return [run for v in variants for run in plan([model], [loss], seeds, folds, variant=v, inner=inner)]


def _arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    adult = (frame["age_group"].astype(str) == "adult").to_numpy() if "age_group" in frame else \
        np.zeros(len(frame), dtype=bool)
    return frame["y_true"].to_numpy(int), frame["y_pred"].to_numpy(int), adult


def _rate(index: np.ndarray, subset: np.ndarray, event: np.ndarray) -> np.ndarray:
    """The event's share within the subset for each bootstrap row of ``index`` ([B, L], -1 = padding)."""
    valid = index >= 0
    safe = np.where(valid, index, 0)
    n = (subset[safe] & valid).sum(axis=1)
    k = (subset[safe] & event[safe] & valid).sum(axis=1)
    return np.where(n > 0, k / np.maximum(n, 1), np.nan)


def paired_shortcut_metrics(default: pd.DataFrame, other: pd.DataFrame, n_boot: int, seed: int = 0,
                            level: float = LEVEL) -> dict[str, tuple[float, float, float, float, float]]:
    """``name -> (default, other, other - default, low, high)`` for each of ``SHORTCUT_METRICS`` on the
    same images, the CI from patient resamples shared by both frames (NaN where no image qualifies)."""
    a, b = align_frames([default, other])
    index = patient_resamples(a["patient_id"], a["y_true"], n_boot=n_boot, seed=seed).numpy()
    out = {}
    for name, (subset_of, event_of) in SHORTCUT_METRICS.items():
        values, samples = [], []
        for frame in (a, b):
            t, p, adult = _arrays(frame)
            subset, event = subset_of(t, p, adult), event_of(t, p, adult)
            values.append(float(event[subset].mean()) if subset.any() else np.nan)
            samples.append(_rate(index, subset, event))
        diff = samples[1] - samples[0]
        ok = ~np.isnan(diff)
        low, high = percentile_interval(diff[ok], level) if ok.any() else (np.nan, np.nan)
        out[name] = (values[0], values[1], values[1] - values[0], low, high)
    return out


def mitigation_tests(default: Sequence[pd.DataFrame], variants: dict[str, Sequence[pd.DataFrame]],
                     n_boot: int) -> pd.DataFrame:
    """Default recipe vs each mitigation on pooled predictions (seed ensembles): one row per (mitigation,
    metric) with default, mitigated, their difference and its CI, and the McNemar p (Holm) of accuracy."""
    if not variants:
        return pd.DataFrame()
    frames = {DEFAULT: mean_predictions(list(default)),
              **{name: mean_predictions(list(f)) for name, f in variants.items()}}
    tests = pairwise_tests(frames, [(name, DEFAULT) for name in variants], n_boot=n_boot).set_index("a")
    rows = []
    for name in variants:
        for metric, (d, m, diff, low, high) in paired_shortcut_metrics(frames[DEFAULT], frames[name],
                                                                       n_boot).items():
            rows.append({"mitigation": name, "what": describe_variant(name), "metric": metric, "default": d,
                         "mitigated": m, "diff": diff, "diff_low": low, "diff_high": high,
                         "p_holm": tests.loc[name, "p_holm"] if metric == "accuracy" else np.nan})
    return pd.DataFrame(rows)


def mitigation_markdown(table: pd.DataFrame) -> str:
    """The mitigation table: one row per mitigation, one column per metric (``mitigated − default [CI]``)."""
    if table.empty:
        return "No mitigation was run."
    wide = []
    for name, rows in table.groupby("mitigation", sort=False):
        row = {"mitigation": name}
        for r in rows.itertuples():
            row[r.metric] = f"{r.mitigated:.3f} ({fmt_ci(r.diff, r.diff_low, r.diff_high)})"
        row["p (Holm), accuracy"] = fmt_p(rows["p_holm"].dropna().iloc[0])
        wide.append(row)
    first = table.drop_duplicates("metric").set_index("metric")["default"]
    wide.insert(0, {"mitigation": DEFAULT, **{m: f"{v:.3f}" for m, v in first.items()},
                    "p (Holm), accuracy": ""})
    return markdown_table(pd.DataFrame(wide), digits=3)


def mitigation_section(default: Sequence[pd.DataFrame], variants: dict[str, Sequence[pd.DataFrame]],
                       loss: str, n_boot: int, out: Path) -> list[str]:
    """The report section: the mitigation table (``mitigations.csv``) of ``variants`` (mitigation -> pooled
    frames per seed) against ``default``, and what each mitigation changes."""
    table = mitigation_tests(default, variants, n_boot)
    write_csv(table, out / "mitigations.csv", index=False)
    return ["## Mitigations of source shortcuts", "",
            f"PEPX-ResNet + {loss} with the profile's recipe (default) against the same network with each "
            "mitigation, same folds, budget and seeds, pooled out-of-fold. Each cell: the mitigated figure "
            "(mitigated − default [95 % paired patient-bootstrap CI]); accuracy also by exact McNemar, Holm "
            "over this table. What each changes:", "",
            *[f"- `{name}`: {describe_variant(name)}" for name in variants], "",
            mitigation_markdown(table), ""]
