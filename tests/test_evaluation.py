"""Metrics, bootstrap CIs, breakdowns and the evaluation report on synthetic predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pepx import CLASSES
from pepx.evaluation.bootstrap import bootstrap_metrics, metric_samples, patient_resamples
from pepx.evaluation.breakdown import breakdown
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.metrics import PROB_COLUMNS, compute_metrics, confusion_matrix, mean_predictions
from test_evaluation_fakes import fake_predictions


def frame_from_confusion(cm: np.ndarray) -> pd.DataFrame:
    y_true, y_pred = [], []
    for t in range(3):
        for p in range(3):
            y_true += [t] * int(cm[t, p])
            y_pred += [p] * int(cm[t, p])
    return pd.DataFrame({"y_true": y_true, "y_pred": y_pred})


def test_metrics_match_hand_computed_confusion():
    cm = np.array([[8, 1, 1], [2, 7, 1], [0, 1, 9]])
    frame = frame_from_confusion(cm)
    m = compute_metrics(frame)
    np.testing.assert_array_equal(confusion_matrix(frame), cm)
    precision = np.array([8 / 10, 7 / 9, 9 / 11])
    recall = np.array([8 / 10, 7 / 10, 9 / 10])
    f1 = 2 * precision * recall / (precision + recall)
    assert m["accuracy"] == pytest.approx(24 / 30)
    for k, c in enumerate(CLASSES):
        assert m[f"precision_{c}"] == pytest.approx(precision[k], abs=1e-6)
        assert m[f"recall_{c}"] == pytest.approx(recall[k], abs=1e-6)
        assert m[f"f1_{c}"] == pytest.approx(f1[k], abs=1e-6)
    assert m["macro_f1"] == pytest.approx(f1.mean(), abs=1e-6)
    assert "ece" not in m  # no probability columns


def test_ece_small_when_calibrated_large_when_overconfident():
    calibrated = fake_predictions(2000, accuracy=0.7, seed=1)
    overconfident = fake_predictions(2000, accuracy=0.7, seed=1, confidence=0.99)
    assert compute_metrics(calibrated)["ece"] < 0.02
    assert compute_metrics(overconfident)["ece"] == pytest.approx(0.29, abs=0.02)


def _width(table: pd.DataFrame, metric: str = "accuracy") -> float:
    row = table.set_index("metric").loc[metric]
    return float(row["high"] - row["low"])


def test_bootstrap_contains_point_and_narrows_with_n():
    small = bootstrap_metrics(fake_predictions(20, seed=2), n_boot=500)
    large = bootstrap_metrics(fake_predictions(200, seed=2).drop(columns=list(PROB_COLUMNS)), n_boot=500)
    for table in (small, large):
        assert len(table) >= 11
        assert ((table["low"] <= table["value"] + 1e-9) & (table["value"] <= table["high"] + 1e-9)).all()
    assert _width(large) < 0.5 * _width(small)
    assert _width(large, "f1_normal") < 0.5 * _width(small, "f1_normal")


def test_bootstrap_resamples_patients_not_images():
    one = fake_predictions(50, seed=3).drop(columns=list(PROB_COLUMNS))
    five = fake_predictions(50, seed=3, images_per_patient=5).drop(columns=list(PROB_COLUMNS))
    five["y_pred"] = np.repeat(one["y_pred"].to_numpy(), 5)
    as_images = five.assign(patient_id=five["path"])  # what an image-level bootstrap would do
    w_one, w_five, w_images = (_width(bootstrap_metrics(f, n_boot=1000)) for f in (one, five, as_images))
    assert w_five == pytest.approx(w_one, rel=0.15)  # five copies of a patient are one unit of evidence
    assert w_images < 0.6 * w_one  # counting copies as evidence would narrow the CI by ~sqrt(5)


def test_patient_resamples_keep_patients_whole_and_classes_balanced():
    patients = np.repeat(["a", "b", "c", "d"], [1, 2, 3, 2])
    labels = np.repeat([0, 0, 1, 1], [1, 2, 3, 2])
    index = patient_resamples(patients, labels, n_boot=50, seed=0).numpy()
    assert np.array_equal(index, patient_resamples(patients, labels, n_boot=50, seed=0).numpy())
    for row in index:
        drawn = patients[row[row >= 0]]
        for pid, size in (("a", 1), ("b", 2), ("c", 3), ("d", 2)):
            assert (drawn == pid).sum() % size == 0
        assert ((drawn == "a") | (drawn == "b")).sum() in (2, 3, 4)  # two class-0 patients drawn
        assert ((drawn == "c") | (drawn == "d")).sum() in (4, 5, 6)


def test_several_seed_frames_average_and_single_frame_is_itself():
    f = fake_predictions(30, seed=4)
    point, boot = metric_samples(f, n_boot=200)
    point2, boot2 = metric_samples([f, f.sample(frac=1, random_state=0)], n_boot=200)
    assert point2["accuracy"] == pytest.approx(point["accuracy"])
    np.testing.assert_allclose(boot2["accuracy"], boot["accuracy"])
    assert mean_predictions([f]) is f
    assert (mean_predictions([f, f])["y_pred"].to_numpy() == f["y_pred"].to_numpy()).all()


def test_breakdown_by_source():
    f = fake_predictions(30, seed=5)
    table = breakdown(f, "source", n_boot=200).set_index("group")
    assert table.loc["hospital_c", "n_COVID-19"] == 30
    assert np.isnan(table.loc["hospital_c", "recall_normal"])
    assert np.isnan(table.loc["hospital_c", "macro_f1"])  # one class only
    assert table["n_images"].sum() == len(f)


def test_evaluate_predictions_writes_report_json_and_pngs(tmp_path):
    f = fake_predictions(20, seed=6)
    summary = evaluate_predictions(f, tmp_path, title="fake", n_boot=200)
    assert summary["n_images"] == 60
    for name in ("predictions.csv", "metrics.json", "report.md", "confusion_matrix.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 0
    for png in ("confusion_matrix.png", "reliability.png"):
        with Image.open(tmp_path / png) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert {m["metric"] for m in data["metrics"]} >= {"accuracy", "macro_f1", "ece"}
    report = (tmp_path / "report.md").read_text()
    assert "Shortcut warning" in report and "By source" in report and "By age_group" in report
    assert "source=hospital_c occurs only in class COVID-19" in report  # pepx.data.confound_report
    assert "95 % CI" in report
