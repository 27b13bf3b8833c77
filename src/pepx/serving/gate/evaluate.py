"""`pepx gate evaluate`: how a bundle's gate does on frontal test films and on images of other kinds.

Scored, all through the bundle's own reading, preprocessing, network and gate:
- frontal: the split's `test` rows (never used to fit the gate);
- real other kinds: the test part of an out-of-distribution set (`pepx.serving.gate.ood`; cxr-ood: CT,
  lateral, photo), one row per kind;
- synthetic: each of `EVAL_KINDS` (inverted, rotated 90 degrees, blank, noise, heavily cropped) made from
  every test film with a fixed seed (other settings and another seed than the gate was fitted with);
- optionally frontal films of sources the network never saw (`unseen`): how much more often they are
  `unfamiliar` than the seen-source test films (the AUROC of the distance separating them).

Reported with patient-bootstrap CIs (`pepx.serving.gate.stats`): per kind AUROC and FPR at 95 % TPR of the
gate score, and the share rejected / unfamiliar at the bundle's thresholds; for the frontal test films the
share rejected and unfamiliar overall, by source and by age group. Files: `report.md`, `gate_eval.json`,
`scores.csv` (one row per image).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pepx.data.io import read_image
from pepx.errors import ConfigError
from pepx.evaluation.bootstrap import N_BOOT
from pepx.evaluation.report import fmt_ci, write_json
from pepx.fileio import write_csv, write_text
from pepx.markdown import markdown_table
from pepx.serving.bundle import Bundle
from pepx.serving.gate.ood import read_ood
from pepx.serving.gate.stats import rate, separation
from pepx.serving.gate.synthetic import EVAL_KINDS, corrupt
from pepx.serving.predictor import Predictor

#: Seed of the synthetic test images (the gate is fitted on other kinds' settings, with its own seed).
EVAL_SEED = 20261204
GROUP_COLUMNS = ("source", "age_group")


def _score(predictor: Predictor, images: Iterable[np.ndarray], batch_size: int = 64) -> pd.DataFrame:
    """Gate outcome, score and distance of each image."""
    rows: list[dict[str, Any]] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        _, verdicts = predictor.score_tensor(torch.stack(batch))
        rows.extend({"outcome": v.outcome, "score": v.score, "distance": v.distance} for v in verdicts)
        batch.clear()

    for image in images:
        batch.append(predictor.preprocess(image))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return pd.DataFrame(rows, columns=["outcome", "score", "distance"])


def score_sets(predictor: Predictor, test: pd.DataFrame, ood: str | Path | None = None,
               unseen: pd.DataFrame | None = None, say: Callable[[str], Any] = lambda _: None
               ) -> pd.DataFrame:
    """One row per scored image: `set` (frontal / unseen / ood / synthetic), `kind`, `group` (patient or
    case), `source`, `age_group`, `path`, and the gate's `outcome`, `score`, `distance`."""
    parts = []
    meta = test.reindex(columns=["path", "patient_id", *GROUP_COLUMNS])
    say(f"gate evaluate: {len(test)} frontal test films and {len(EVAL_KINDS)} synthetic kinds made of them")
    images = [read_image(p) for p in test["path"]]
    frontal = _score(predictor, images).assign(set="frontal", kind="frontal")
    parts.append(pd.concat([meta.reset_index(drop=True), frontal], axis=1))
    rng = np.random.default_rng(EVAL_SEED)
    for kind in EVAL_KINDS:
        scored = _score(predictor, (corrupt(im, kind, rng) for im in images))
        parts.append(pd.concat([meta.reset_index(drop=True), scored.assign(set="synthetic", kind=kind)],
                               axis=1))
    if ood is not None:
        frame = read_ood(ood)
        frame = frame[frame["part"] == "test"].reset_index(drop=True)
        say(f"gate evaluate: {len(frame)} images of other kinds ({ood}, test part)")
        scored = _score(predictor, (read_image(p) for p in frame["path"])).assign(set="ood")
        parts.append(pd.concat([frame[["path", "kind"]].assign(patient_id=frame["group"]), scored], axis=1))
    if unseen is not None and len(unseen):
        say(f"gate evaluate: {len(unseen)} frontal films of unseen sources")
        meta_u = unseen.reindex(columns=["path", "patient_id", *GROUP_COLUMNS]).reset_index(drop=True)
        scored = _score(predictor, (read_image(p) for p in unseen["path"]))
        parts.append(pd.concat([meta_u, scored.assign(set="unseen", kind="unseen")], axis=1))
    out = pd.concat(parts, ignore_index=True).rename(columns={"patient_id": "group"})
    out["group"] = out["group"].astype(str)
    return out


def gate_tables(scores: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, pd.DataFrame]:
    """`kinds`: per OOD kind AUROC, FPR at 95 % TPR, share rejected / unfamiliar; `frontal`: frontal test
    films rejected / unfamiliar overall, by source and age group; `unseen`: the leave-source-out
    separation."""
    front = scores[scores["set"] == "frontal"]
    kinds = []
    others = scores[scores["set"].isin(["ood", "synthetic"])]
    for (set_, kind), other in others.groupby(["set", "kind"], sort=False):
        sep = separation(front["score"].to_numpy(), other["score"].to_numpy(), front["group"],
                         other["group"], n_boot, seed)
        kinds.append({"kind": kind, "set": "cxr-ood test part" if set_ == "ood" else "synthetic", **sep,
                      **_rates(other, n_boot, seed)})
    groups = [{"group": "all", "value": "all", **_rates(front, n_boot, seed)}]
    for column in GROUP_COLUMNS:
        for value, rows in front.dropna(subset=[column]).groupby(column):
            groups.append({"group": column, "value": value, **_rates(rows, n_boot, seed)})
    tables = {"kinds": pd.DataFrame(kinds), "frontal": pd.DataFrame(groups)}
    unseen = scores[scores["set"] == "unseen"]
    if len(unseen):
        sep = separation(front["distance"].to_numpy(), unseen["distance"].to_numpy(), front["group"],
                         unseen["group"], n_boot, seed)
        rows = [{"which": "seen-source test films", **_rates(front, n_boot, seed)}]
        for value, part in unseen.groupby("source"):
            rows.append({"which": f"unseen source {value}", **_rates(part, n_boot, seed)})
        tables["unseen"] = pd.DataFrame(rows).assign(
            distance_auroc=[np.nan] + [sep["auroc"]] * (len(rows) - 1),
            distance_auroc_low=[np.nan] + [sep["auroc_low"]] * (len(rows) - 1),
            distance_auroc_high=[np.nan] + [sep["auroc_high"]] * (len(rows) - 1))
    return tables


def _rates(rows: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
    out: dict[str, float] = {"n": int(len(rows))}
    for name in ("rejected", "unfamiliar"):
        value, low, high = rate((rows["outcome"] == name).to_numpy(), rows["group"], n_boot, seed)
        out |= {name: value, f"{name}_low": low, f"{name}_high": high}
    return out


def evaluate_gate(bundle: Bundle, split: pd.DataFrame, out: str | Path, ood: str | Path | None = None,
                  unseen: pd.DataFrame | None = None, n_boot: int = N_BOOT, seed: int = 0,
                  say: Callable[[str], Any] = lambda _: None) -> dict[str, Any]:
    """Score and report (module docstring) into the folder `out`; returns the tables and the report text."""
    predictor = Predictor(bundle, device="cpu")
    if predictor.gate is None:
        raise ConfigError(f"{bundle.path}: this bundle has no gate to evaluate (fit one: `pepx gate fit`)")
    test = split[split["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ConfigError("the split has no test rows: the gate is evaluated on films it was not fitted on")
    scores = score_sets(predictor, test, ood, unseen, say)
    tables = gate_tables(scores, n_boot, seed)
    out = Path(out)
    write_csv(scores, out / "scores.csv", index=False)
    text = gate_report(bundle, tables, n_boot)
    write_text(out / "report.md", text)
    write_json({"bundle": {"id": bundle.id, "version": bundle.version},
                "thresholds": predictor.gate.thresholds, "n_boot": n_boot,
                **{k: v.to_dict(orient="records") for k, v in tables.items()}}, out / "gate_eval.json")
    return {"tables": tables, "report": text, "scores": scores}


def gate_report(bundle: Bundle, tables: dict[str, pd.DataFrame], n_boot: int) -> str:
    """The Markdown report of `gate_tables`."""
    t = bundle.gate.thresholds if bundle.gate is not None else {}
    lines = [f"# Input gate of {bundle.id} {bundle.version}", "",
             f"Thresholds: rejected at gate score >= {t.get('reject', float('nan')):.3f}, unfamiliar at "
             f"distance >= {t.get('unfamiliar', float('nan')):.3f}. 95 % CIs from {n_boot} resamples of "
             "patients (frontal films) and cases (other kinds).", "",
             "## Images that are not frontal chest X-rays", "",
             markdown_table(kind_table(tables["kinds"])), "",
             "## Frontal test films", "",
             markdown_table(rate_table(tables["frontal"], ["group", "value"])), ""]
    if "unseen" in tables:
        u = tables["unseen"].iloc[1]
        auroc = fmt_ci(u["distance_auroc"], u["distance_auroc_low"], u["distance_auroc_high"])
        lines += ["## Films of sources the network never saw", "",
                  markdown_table(rate_table(tables["unseen"], ["which"])), "",
                  f"AUROC of the distance, unseen-source films against seen-source test films: {auroc}.", ""]
    return "\n".join(lines)


def kind_table(kinds: pd.DataFrame) -> pd.DataFrame:
    """Per kind: n, AUROC, FPR at 95 % TPR, rejected, unfamiliar (each `value [low, high]`)."""
    return pd.DataFrame({
        "kind": kinds["kind"], "images": kinds["n_other"], "from": kinds["set"],
        "AUROC": [fmt_ci(r.auroc, r.auroc_low, r.auroc_high) for r in kinds.itertuples()],
        "FPR at 95 % TPR": [fmt_ci(r.fpr95, r.fpr95_low, r.fpr95_high) for r in kinds.itertuples()],
        **_ci_columns(kinds)})


def rate_table(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame({**{k: frame[k] for k in keys}, "films": frame["n"], **_ci_columns(frame)})


def _ci_columns(frame: pd.DataFrame) -> dict[str, list[str]]:
    return {name: [fmt_ci(v, lo, hi) for v, lo, hi in zip(frame[name], frame[f"{name}_low"],
                                                          frame[f"{name}_high"], strict=True)]
            for name in ("rejected", "unfamiliar")}


__all__ = ["EVAL_SEED", "evaluate_gate", "gate_report", "gate_tables", "score_sets"]
