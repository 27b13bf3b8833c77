"""Tables 1-4 of the paper from our grid: mean ± sd over seeds, the 95 % CI, and the paper's number beside.

CI of a cell: patient bootstrap of the *seed-averaged* metric on the final epoch's test predictions (the same
patient resamples applied to every seed; `pepx.evaluation.bootstrap.metric_samples`). It is the uncertainty
from the finite test set; the sd is the spread from training randomness (init, order) across seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASS_DISPLAY, CLASSES
from pepx.evaluation.bootstrap import LEVEL, N_BOOT, metric_samples, percentile_interval
from pepx.evaluation.metrics import compute_metrics
from pepx.experiments.paper import PAPER_ROWS, TABLES, paper_value
from pepx.fileio import write_csv, write_text
from pepx.markdown import DASH, fmt, markdown_table
from pepx.models.registry import display_name

LOSS_NAMES = {"ce": "softmax CE", "focal": "focal"}
#: Each table's title in plain English (the paper's own, typos included, stay in `pepx.experiments.paper`).
TITLES: dict[int, str] = {1: "Table 1. Accuracy of each network.",
                          2: "Table 2. Precision of each class.",
                          3: "Table 3. Recall (sensitivity) of each class.",
                          4: "Table 4. F1 score of each class."}


def cell_summary(cells: Mapping[tuple[str, str], Sequence[pd.DataFrame]], n_boot: int = N_BOOT, seed: int = 0,
                 level: float = LEVEL) -> pd.DataFrame:
    """Long frame ``model, loss, metric, mean, sd, low, high, n_seeds`` from each cell's seed predictions."""
    rows = []
    for (model, loss), frames in cells.items():
        point, boot = metric_samples(frames, n_boot=n_boot, seed=seed, with_ece=False)
        per_seed = [compute_metrics(f) for f in frames]
        for name, mean in point.items():
            values = [m[name] for m in per_seed]
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            low, high = percentile_interval(boot[name], level)
            rows.append(dict(model=model, loss=loss, metric=name, mean=mean, sd=sd, low=low, high=high,
                             n_seeds=len(frames)))
    return pd.DataFrame(rows)


def _cell_text(mean: float, sd: float, low: float, high: float) -> str:
    """``0.957 ± 0.010 [0.930, 0.977]`` (no ``±`` with one seed)."""
    spread = "" if np.isnan(sd) else f" ± {fmt(sd)}"
    return f"{fmt(mean)}{spread} [{fmt(low)}, {fmt(high)}]"


def table_frame(summary: pd.DataFrame, table: int) -> pd.DataFrame:
    """Wide numeric frame of one table: ``network, loss`` then ``<col>_mean/_sd/_low/_high/_paper``."""
    kind = TABLES[table][1]
    columns = [("Accuracy", "accuracy", None)] if table == 1 else [
        (d, f"{kind}_{c}", c) for c, d in zip(CLASSES, CLASS_DISPLAY, strict=True)]
    rows = []
    for (model, loss), sub in summary.groupby(["model", "loss"], sort=False):
        by_metric = sub.set_index("metric")
        row: dict[str, object] = {"network": display_name(model), "model": model,
                                  "loss": loss, "n_seeds": int(sub["n_seeds"].iloc[0])}
        for display, metric, cls in columns:
            for stat in ("mean", "sd", "low", "high"):
                row[f"{display}_{stat}"] = by_metric.loc[metric, stat]
            row[f"{display}_paper"] = paper_value(table, model, cls)
        rows.append(row)
    return pd.DataFrame(rows)


def table_markdown(frame: pd.DataFrame, table: int) -> str:
    """The table laid out as the paper's, each value as ``mean ± sd [95 % CI]`` beside the paper's number."""
    title = TITLES[table]
    displays = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean")]
    loss = frame["loss"].map(lambda x: LOSS_NAMES.get(x, x))
    out = pd.DataFrame({"network": frame["network"], "loss": loss})
    for d in displays:
        stats = zip(*(frame[f"{d}_{k}"] for k in ("mean", "sd", "low", "high")), strict=True)
        out[f"{d} (ours)"] = [_cell_text(*v) for v in stats]
        out[f"{d} (paper)"] = [DASH if v is None or pd.isna(v) else f"{v:g}" for v in frame[f"{d}_paper"]]
    return f"**{title}**\n\n" + markdown_table(out)


def paper_terms_note() -> str:
    """The footnote naming the paper's own terms for what the tables call in plain English."""
    rows = {display_name(model): row for row, model in PAPER_ROWS.items() if row != display_name(model)}
    titles = "; ".join(f"{TITLES[k].split('.')[0]}: \"{TABLES[k][0].split('. ', 1)[1].rstrip('.')}\""
                       for k in sorted(TABLES))
    names = ", ".join(f"{ours} is its \"{theirs}\"" for ours, theirs in rows.items())
    return (f"The paper's own words, as printed: {titles}. Its rows: {names}. Its numbers are fractions "
            "although its headers say \"(%)\".")


def write_tables(summary: pd.DataFrame, out: str | Path) -> dict[int, str]:
    """Write ``table{1..4}.csv`` and ``table{1..4}.md`` into ``out``; returns each table's Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts = {}
    for table in TABLES:
        frame = table_frame(summary, table)
        write_csv(frame, out / f"table{table}.csv", index=False)
        texts[table] = table_markdown(frame, table)
        write_text(out / f"table{table}.md", texts[table] + "\n")
    return texts
