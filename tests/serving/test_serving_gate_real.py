"""The shipped bundle's input gate on real images (issue 16): cxr-ood's test part (CT slices, lateral films,
photographs; never used to fit the gate) is rejected, the bundle's reference cxr-real test films pass. Skips
where ../shared/data/cxr-ood or cxr-real is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pepx.serving import Predictor
from pepx.serving.gate.ood import read_ood

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
pytestmark = [pytest.mark.real_data,
              pytest.mark.skipif(not (SHARED / "cxr-ood" / "metadata.csv").is_file()
                                 or not (SHARED / "cxr-real" / "metadata.csv").is_file(),
                                 reason="../shared/data/cxr-ood or cxr-real is absent")]
#: Least share rejected per kind (measured on the whole test part with bundle 2.0's source-balanced gate: CT
#: 0.74, lateral 0.89, photo 1.00; its first gate had 0.82, 0.89, 1.00; bundle 1.0 0.92, 0.79, 1.00).
FLOOR = {"ct": 0.7, "lateral": 0.75, "photo": 0.9}
#: The bundle's own test split (its report's predictions), read for the per-source rejection goal.
TEST_SPLIT = ROOT / "docs" / "results" / "bundle2" / "predictions.csv"


def test_shipped_gate_rejects_other_kinds_and_passes_films():
    predictor = Predictor.from_bundle(None, device="cpu")
    assert predictor.gate_status == "on"
    ood = read_ood(SHARED / "cxr-ood")
    test = ood[ood["part"] == "test"]
    preds = predictor.predict(list(test["path"]))
    for kind, floor in FLOOR.items():
        rejected = [p.gate.rejected and p.label is None for p, k in zip(preds, test["kind"], strict=True)
                    if k == kind]
        assert np.mean(rejected) >= floor, (kind, np.mean(rejected))
    checks = predictor.bundle.config["checks"]["images"]
    films = predictor.predict([SHARED / "cxr-real" / c["path"] for c in checks])
    assert not any(p.gate.rejected for p in films)
    assert all(p.label is not None and p.gate.score < predictor.gate.thresholds["reject"] for p in films)


def test_shipped_gate_keeps_every_source_under_five_percent_rejected():
    """Issue 16's goal, per source, on the bundle's 300 test films: at most 5 % rejected in every source. The
    gate that weighed every training film the same rejected 4 of hannover's 45 (8.9 %); this one 2 (4.4 %)."""
    frame = pd.read_csv(TEST_SPLIT)
    frame["file"] = [SHARED / "cxr-real" / p.split("cxr-real/", 1)[1] for p in frame["path"]]
    preds = Predictor.from_bundle(None, device="cpu").predict(list(frame["file"]))
    frame["rejected"] = [p.gate.rejected for p in preds]
    by_source = frame.groupby("source")["rejected"].agg(["sum", "count"])
    assert len(frame) == 300 and by_source.loc["hannover", "count"] == 45
    assert (by_source["sum"] <= 0.05 * by_source["count"]).all(), by_source.to_dict()
