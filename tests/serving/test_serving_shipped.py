"""The bundle shipped in the package: present, intact (pinned sha256), small, and still scoring on the shared
films what its model card says (those tests skip where ../shared/data/cxr-real is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tomllib

from pepx.serving import Predictor, default_bundle_path, load_bundle
from pepx.serving.bundle import SHIPPED

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "cxr-real"
#: Changes only when the bundle is re-made on purpose (scripts/train_bundle.sh): update it with the card.
SHA256 = "66ca813477401533ef14c11d9fc33af817c42e606413deaeffdf4e1c8d76572a"
needs_real = pytest.mark.skipif(not (REAL / "metadata.csv").is_file(),
                                reason="../shared/data/cxr-real is absent")


def test_shipped_bundle_is_intact_small_and_packaged():
    bundle = load_bundle(None)  # verifies the weights against config.json's sha256
    assert bundle.path == default_bundle_path() and bundle.id == SHIPPED and bundle.version == "2.0.0"
    assert bundle.sha256 == SHA256
    weights = bundle.path / "model.safetensors"
    assert weights.stat().st_size <= 8_000_000 and "float16" in bundle.config["weights"]["dtypes"]
    cfg = bundle.config
    assert cfg["architecture"] == {"name": "pepx_resnet", "kwargs": {"width": 0.5}}
    assert cfg["training"]["loss"] == "focal" and cfg["training"]["data"].endswith("cxr-real/metadata.csv")
    assert cfg["training"]["split_counts"]["val"] == {"normal": 100, "pneumonia": 100, "COVID-19": 100}
    card = bundle.card
    assert SHA256 in card and "## Test metrics by age group" in card
    # bundle 2.0 (issue 15): v2 data, every film equalised (here and at predict time), the card leads with
    # the adults-only table by view, a caveat per class, bundle 1.0's figures in its history
    assert cfg["preprocess"]["settings"]["equalize"] == "hist"
    assert "## Adults only" in card and "### Adults by view" in card
    assert card.index("## Adults only") < card.index("## Known failure modes") < card.index("## Use it")
    assert set(cfg["caveats"]) == {"normal", "pneumonia", "COVID-19"}
    assert all(text in card for text in cfg["caveats"].values())
    assert [h["version"] for h in cfg["history"]] == ["1.0.0"] and "## History" in card
    acc = cfg["test_metrics"]["accuracy"]
    assert f"| accuracy | {acc[0]:.3f} | [{acc[1]:.3f}, {acc[2]:.3f}] |" in card
    # a non-editable install carries the bundle: pyproject's package-data pattern matches its three files
    pattern = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = ROOT / "src" / "pepx" / "serving"
    matched = {p.name for glob in pattern["pepx.serving"] for p in package.glob(glob)}
    assert {"config.json", "model.safetensors", "README.md", "gate.safetensors"} <= matched
    # its input gate (issue 16): thresholds fitted on its own validation split, numbers in the card
    gate = bundle.gate
    assert gate is not None and 0 < gate.reject < 1 and gate.unfamiliar > 0
    assert cfg["gate"]["fitted_on"]["train_films"] == 2250 and cfg["gate"]["fitted_on"]["val_films"] == 300
    fitted = cfg["gate"]["fitted_on"]
    assert fitted["weights"] == "source-balanced" and fitted["framed"]["images"] == 1000
    assert "## Input gate" in card and f">= {gate.reject:.3f}" in card


@pytest.mark.real_data
@needs_real
def test_shipped_bundle_scores_what_its_card_says():
    predictor = Predictor.from_bundle(None, device="cpu")
    checks = predictor.bundle.config["checks"]
    assert checks["data"] == "csv:../shared/data/cxr-real/metadata.csv" and len(checks["images"]) == 12
    preds = predictor.predict([REAL / c["path"] for c in checks["images"]])
    got = np.array([list(p.probabilities.values()) for p in preds])
    expected = np.array([c["probabilities"] for c in checks["images"]])
    assert np.abs(got - expected).max() < 1e-4
    for c, p in zip(checks["images"], preds, strict=True):  # the card's table shows these numbers
        assert " | ".join(f"{v:.4f}" for v in p.probabilities.values()) in predictor.bundle.card, c["path"]
