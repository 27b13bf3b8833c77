"""Does the gate's `unfamiliar` verdict single out films of sources the model never saw? Two checks on the
shipped bundle (pepx-resnet-focal-cxr-real 1.0.0), from the repository root after scripts/gate_bundle.py:

    python scripts/gate_lso.py        # -> docs/results/gate-lso/report.md (+ .json)

1. cxr-real version 2's `rsna` films (1,605 adult NIH/RSNA films, histogram-equalised by their collection)
   were never shown to the bundle, trained on version 1: how often is each called `unfamiliar`, against the
   seen-source test films, and the AUROC of the gate distance separating them.
2. Leave one source out of the gate: the gate's Gaussians (class means, tied covariance, the standardisation
   of the log distances) and its `unfamiliar` threshold (95 % of validation films below) are fitted again
   without source S; then S's films against the other sources' validation and test films. The network itself
   did see S's training films, so this measures the gate's reference set, not a network that never met S.

Features of every film are computed once through the bundle (`FeatureReader`: its own preprocessing and
network) and cached in runs/gate-bundle/features.npz. 95 % CIs from 1,000 patient resamples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from gate_bundle import SPLIT, bundle_split

from pepx.data import load_source, load_split, read_image
from pepx.evaluation.report import fmt_ci
from pepx.markdown import markdown_table
from pepx.serving.bundle import default_bundle_path, load_bundle
from pepx.serving.gate.build import FeatureReader
from pepx.serving.gate.fit import cross_fitted_log_distances, gaussians
from pepx.serving.gate.model import GateModel
from pepx.serving.gate.stats import rate, separation

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "gate-bundle" / "features.npz"
OUT = ROOT / "docs" / "results" / "gate-lso"
N_BOOT = 1000
EXPLAIN = ("Unfamiliar rate of films from a source the gate's reference set lacks, against seen-source "
           "validation / test films, and the AUROC of the gate distance separating them (95 % CIs, 1,000 "
           "patient resamples). First row: the shipped gate on cxr-real v2's rsna films (never shown to the "
           "bundle). Other rows: the gate's Gaussians and threshold refitted without that source (the "
           "network itself saw its training films). `python scripts/gate_lso.py`.")


def features(bundle, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Pooled stage features of every row of `frame` (cached by path)."""
    reader = FeatureReader(bundle)
    if CACHE.is_file():
        cached = dict(np.load(CACHE, allow_pickle=False))
        if list(cached.pop("path")) == list(frame["path"]):
            spot = np.random.default_rng(0).choice(len(frame), 8, replace=False)  # the cache is still right
            fresh = reader(read_image(frame["path"].iloc[i]) for i in spot)
            if all(np.abs(fresh[k] - cached[k][spot]).max() < 1e-4 for k in fresh):
                return cached
    feats = reader(read_image(p) for p in frame["path"])
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, path=np.array(frame["path"], dtype=str), **feats)
    return feats


def mean_z(layers, means, precision, center, scale, feats) -> np.ndarray:
    empty = np.zeros(0, np.float32)
    model = GateModel(layers, means, precision, center, scale, empty, empty, empty, 0.0)
    return ((model.log_distances(feats) - center) / scale).mean(axis=1)


def row(name: str, seen: pd.DataFrame, unseen: pd.DataFrame, d_seen, d_unseen, threshold: float) -> dict:
    sep = separation(d_seen, d_unseen, seen["patient_id"], unseen["patient_id"], N_BOOT)
    r_seen = rate(d_seen >= threshold, seen["patient_id"], N_BOOT)
    r_unseen = rate(d_unseen >= threshold, unseen["patient_id"], N_BOOT)
    return {"unseen": name, "unseen films": len(unseen), "seen films": len(seen),
            "unfamiliar, unseen": fmt_ci(*r_unseen), "unfamiliar, seen": fmt_ci(*r_seen),
            "AUROC of the distance": fmt_ci(sep["auroc"], sep["auroc_low"], sep["auroc_high"]),
            "_values": {"unseen_rate": r_unseen, "seen_rate": r_seen,
                        "auroc": [sep["auroc"], sep["auroc_low"], sep["auroc_high"]]}}


def main() -> None:
    bundle = load_bundle(default_bundle_path())
    gate = bundle.gate
    split = load_split(SPLIT if SPLIT.is_file() else bundle_split())
    manifest = load_source(bundle.config["training"]["data"]).manifest
    rsna = manifest[manifest["source"] == "rsna"].assign(split="rsna")
    frame = pd.concat([split, rsna], ignore_index=True)
    feats = features(bundle, frame)
    layers = gate.layers
    model = GateModel.from_tensors(layers, bundle.gate_tensors)
    _, distance = model.scores(feats)
    test = (frame["split"] == "test").to_numpy()
    is_rsna = (frame["split"] == "rsna").to_numpy()
    rows = [row("rsna (cxr-real v2; the shipped gate)", frame[test], frame[is_rsna], distance[test],
                distance[is_rsna], gate.unfamiliar)]
    classes = list(bundle.classes)
    y = np.array([classes.index(c) for c in frame["label"]])
    for source, n in frame.loc[~is_rsna, "source"].value_counts().items():
        if n < 30:
            continue
        keep_train = ((frame["split"] == "train") & (frame["source"] != source)).to_numpy()
        idx = np.flatnonzero(keep_train)
        sub = {k: v[idx] for k, v in feats.items()}
        means, precision = gaussians(sub, layers, y[idx], len(classes))
        log_train = cross_fitted_log_distances(sub, layers, y[idx], frame["patient_id"].to_numpy()[idx],
                                               len(classes))
        center, scale = log_train.mean(axis=0), log_train.std(axis=0) + 1e-6
        d = mean_z(layers, means, precision, center, scale, feats)
        val = ((frame["split"] == "val") & (frame["source"] != source)).to_numpy()
        threshold = float(np.quantile(d[val], 0.95, method="higher"))
        seen = ((frame["split"].isin(["val", "test"])) & (frame["source"] != source)).to_numpy()
        unseen = ((frame["source"] == source) & ~is_rsna).to_numpy()
        rows.append(row(f"{source} (gate refitted without it)", frame[seen], frame[unseen], d[seen],
                        d[unseen], threshold))
    OUT.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "_values"} for r in rows])
    text = "\n".join(["# Leave-source-out: the gate's `unfamiliar` verdict", "", EXPLAIN, "",
                      markdown_table(table), ""])
    (OUT / "report.md").write_text(text)
    (OUT / "lso.json").write_text(json.dumps({r["unseen"]: r["_values"] for r in rows}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
