"""AUROC against a hand computation, operating points, temperature scaling on an over-confident model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fakes.runs import fake_predictions
from pepx import CLASSES
from pepx.evaluation.calibration import calibration_table, fit_temperature, probabilities
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.roc import auroc_table, roc_curves, sens_spec, threshold_for_sensitivity


def hand_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting one half."""
    pos, neg = scores[positive], scores[~positive]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def frame_of(probs: np.ndarray, y: np.ndarray, patients=None) -> pd.DataFrame:
    f = pd.DataFrame(probs, columns=[f"prob_{c}" for c in CLASSES])
    f["y_true"], f["y_pred"] = y, probs.argmax(1)
    f["patient_id"] = patients if patients is not None else [f"p{i}" for i in range(len(y))]
    return f


def test_auroc_equals_hand_computation():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 9)
    logits = rng.normal(size=(27, 3)) + 1.2 * np.eye(3)[y]
    probs = probabilities(logits).astype(np.float32)
    probs[3, 0] = probs[12, 0] = 0.25  # a tie between a positive and a negative
    frame = frame_of(probs, y)
    table = auroc_table(frame, n_boot=300).set_index("metric")
    hand = [hand_auroc(probs[:, k], y == k) for k in range(3)]
    for k, c in enumerate(CLASSES):
        assert table.loc[f"auroc_{c}", "value"] == pytest.approx(hand[k], abs=1e-6)
        assert table.loc[f"auroc_{c}", "low"] <= hand[k] <= table.loc[f"auroc_{c}", "high"]
    assert table.loc["auroc_macro", "value"] == pytest.approx(np.mean(hand), abs=1e-6)
    assert 0.5 < np.mean(hand) < 1.0
    curve = roc_curves(frame)["normal"]
    assert curve["fpr"].iloc[0] == 0 and curve["tpr"].iloc[-1] == pytest.approx(1.0)
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(hand[0], abs=1e-6)


def test_threshold_for_sensitivity_and_its_test_metrics():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.5, 0.4, 0.3, 0.1, 0.05])
    positive = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    assert threshold_for_sensitivity(scores, positive, 0.8) == 0.6  # 4 of 5 positives at or above
    assert threshold_for_sensitivity(scores, positive, 1.0) == 0.2
    assert threshold_for_sensitivity(scores, positive, 0.2) == 0.9
    with pytest.raises(ValueError, match="no positive"):
        threshold_for_sensitivity(scores, np.zeros(10, dtype=bool), 0.9)
    probs = np.stack([1 - scores, np.zeros(10), scores], axis=1)
    frame = frame_of(probs, np.where(positive, 2, 0))
    out = sens_spec(frame, "COVID-19", 0.6, n_boot=300)
    assert (out["sensitivity"], out["specificity"]) == (0.8, 1.0)  # 4/5 flagged; 0/5 negatives >= 0.6
    assert out["sensitivity_low"] <= 0.8 <= out["sensitivity_high"] and out["n_positive"] == 5


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """z = noise + 1.3 * one_hot(y): the Bayes posterior is softmax(1.3 z) (unit Gaussian noise), so the
    returned logits 5 z are over-confident by a factor 5 / 1.3."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    logits = rng.normal(size=(len(y), 3)) + 1.3 * np.eye(3)[y]
    return 5.0 * logits, y


def test_temperature_scaling_lowers_ece_and_nll_of_an_overconfident_model():
    val_logits, val_y = overconfident(600, seed=1)
    test_logits, test_y = overconfident(600, seed=2)
    t = fit_temperature(val_logits, val_y)
    assert t == pytest.approx(5 / 1.3, rel=0.15)
    table = calibration_table(test_logits, test_y, [f"p{i}" for i in range(len(test_y))], t, n_boot=300)
    table = table.set_index("metric")
    assert table.loc["ece_after", "value"] < 0.5 * table.loc["ece_before", "value"]
    assert table.loc["nll_after", "value"] < 0.6 * table.loc["nll_before", "value"]
    assert table.loc["ece_change", "high"] < 0 and table.loc["nll_change", "high"] < 0  # CIs exclude 0
    before, after = probabilities(test_logits), probabilities(test_logits, t)
    assert (before.argmax(1) == after.argmax(1)).all()  # accuracy cannot move
    # a calibrated model is left (nearly) alone
    assert fit_temperature(val_logits * 1.3 / 5.0, val_y) == pytest.approx(1.0, rel=0.15)


def test_evaluate_report_has_auroc_and_roc_png(tmp_path):
    f = fake_predictions(20, seed=6)
    summary = evaluate_predictions(f, tmp_path, title="fake", n_boot=200)
    assert (tmp_path / "roc.png").stat().st_size > 1000
    assert set(summary["auroc"]["metric"]) == {f"auroc_{c}" for c in CLASSES} | {"auroc_macro"}
    assert "## ROC and AUROC" in (tmp_path / "report.md").read_text()
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert [m["metric"] for m in data["auroc"]][-1] == "auroc_macro"
