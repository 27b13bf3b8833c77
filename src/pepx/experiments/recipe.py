"""`pepx recipe`: score candidate training recipes on inner validation folds only, and rank them.

Each candidate (a profile of ``profiles.RECIPES``, or any profile) trains PEPX-ResNet + focal with
`pepx reproduce --cv K --inner-val` in ``OUT/<candidate>/``: for outer fold k the model trains without folds k
and k+1 and is scored on fold k+1, so the outer test folds are never touched. The table ranks the candidates
by pooled inner-validation accuracy (with its patient-bootstrap CI), and compares each with the best image by
image (McNemar, Holm; every candidate is scored on the same images, since the folds depend only on the data,
K and the split seed). Put the winner's settings into the ``cpu-cv`` profile, then run the final
`pepx reproduce --cv K` once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from pepx.evaluation.report import fmt_ci
from pepx.evaluation.stats import pairwise_tests
from pepx.experiments.comparisons import HEADLINE, detectable_text, fmt_p
from pepx.experiments.cv import reproduce_cv
from pepx.experiments.executors import Executor
from pepx.experiments.grid import INNER_DIR, read_timings
from pepx.experiments.profiles import Profile, get_profile
from pepx.fileio import write_csv, write_text
from pepx.markdown import markdown_table

#: Settings that do not change what a recipe learns (left out of the "changes" column).
NEUTRAL = ("name", "seeds", "models", "losses", "n_boot", "num_threads", "num_workers", "extra")


def changes(profile: Profile, base: Profile) -> str:
    """``epochs=15, augment=True``: the settings in which ``profile`` differs from ``base``."""
    a, b = asdict(profile), asdict(base)
    diff = [f"{k}={a[k]}" for k in a if k not in NEUTRAL and a[k] != b[k]]
    return ", ".join(diff) or "(base)"


def score_recipes(candidates: Sequence[str], out: str | Path, k: int = 5, folds: Sequence[int] | None = None,
                  data: str | None = None, epochs: int | None = None, jobs: int = 1, n_boot: int = 2000,
                  executor: Executor | None = None, report_only: bool = False,
                  log: Callable[[str], None] = print) -> Path:
    """Run every candidate on the inner folds (resumable; on ``executor``, default: this machine, ``jobs``
    at a time), then write ``recipes.md`` and ``recipes.csv``. ``report_only``: train nothing."""
    out = Path(out)
    if executor is not None and not report_only:
        executor.open()  # before any candidate's folder is written
    pooled: dict[str, pd.DataFrame] = {}
    rows = []
    overrides = dict(data=data, epochs=epochs, seeds=1, models=[HEADLINE[0]], losses=[HEADLINE[1]],
                     n_boot=n_boot)
    profiles = {name: get_profile(name, **overrides) for name in candidates}
    base = get_profile("base", **overrides)
    for name, profile in profiles.items():
        log(f"== candidate {name}: {changes(profile, base)}")
        reproduce_cv(profile, out / name, k, inner_val=True, folds=folds, jobs=jobs, executor=executor,
                     report_only=report_only, log=log)
        inner = out / name / INNER_DIR
        summary = pd.read_csv(inner / "summary.csv").set_index("metric")
        pooled[name] = pd.read_csv(inner / "pooled" / f"{HEADLINE[0]}-{HEADLINE[1]}.csv")
        timings = read_timings(out / name)
        acc, f1 = summary.loc["accuracy"], summary.loc["macro_f1"]
        rows.append({"candidate": name, "changes": changes(profile, base),
                     "accuracy": acc["mean"], "accuracy_low": acc["low"], "accuracy_high": acc["high"],
                     "macro_f1": f1["mean"], "n_images": len(pooled[name]),
                     "train_s": sum(timings.values()), "n_runs": len(timings)})
    table = pd.DataFrame(rows).sort_values("accuracy", ascending=False, kind="stable").reset_index(drop=True)
    best = table["candidate"].iloc[0]
    others = [(best, name) for name in table["candidate"].iloc[1:]]
    tests = pairwise_tests(pooled, others, n_boot=n_boot).set_index("b") if others else pd.DataFrame()
    for col in ("diff", "diff_low", "diff_high", "p_holm", "detectable"):
        table[f"best_minus_{col}" if col.startswith("diff") else col] = [
            tests.loc[c, col] if c in tests.index else float("nan") for c in table["candidate"]]
    write_csv(table, out / "recipes.csv", index=False)
    write_text(out / "recipes.md", recipes_markdown(table, k, folds) + "\n")
    log(f"recipes: {out / 'recipes.md'} (best: {best})")
    return out / "recipes.md"


def recipes_markdown(table: pd.DataFrame, k: int, folds: Sequence[int] | None) -> str:
    """The ranking of candidate recipes: inner-validation scores, and the comparison with the best."""
    which = "all folds" if folds is None else f"outer folds {', '.join(map(str, folds))}"
    compared = table.index > 0
    frame = pd.DataFrame({
        "candidate": table["candidate"], "changes vs base": table["changes"],
        "inner-val accuracy [95 % CI]": [fmt_ci(v, lo, hi) for v, lo, hi in zip(
            table["accuracy"], table["accuracy_low"], table["accuracy_high"], strict=True)],
        "macro-F1": table["macro_f1"],
        "best − this [95 % CI]": [fmt_ci(*v) if c else "(best)" for c, *v in zip(
            compared, table["best_minus_diff"], table["best_minus_diff_low"], table["best_minus_diff_high"],
            strict=True)],
        "p (Holm)": [fmt_p(p) if c else "" for c, p in zip(compared, table["p_holm"], strict=True)],
        "80 % power for": [detectable_text(d) if c else "" for c, d in zip(compared, table["detectable"],
                                                                          strict=True)],
        "training wall time": [f"{s / 60:.1f} min ({n} runs)" for s, n in zip(
            table["train_s"], table["n_runs"], strict=True)],
    })
    return "\n".join([
        f"# Candidate recipes: PEPX-ResNet + focal on inner validation folds ({k}-fold CV, {which})", "",
        "Each run trains without its outer test fold and the next fold, and is scored on that next fold; the "
        "outer test folds are never touched. All candidates are scored on the same images. Sorted by "
        "accuracy; the best is compared with each other candidate image by image (McNemar, Holm).", "",
        markdown_table(frame, digits=3), ""])
