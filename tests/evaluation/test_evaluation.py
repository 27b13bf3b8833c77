"""Metrics, bootstrap CIs, breakdowns and the evaluation report on synthetic predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fakes.runs import fake_predictions
from pepx import CLASSES
from pepx.evaluation.adults import adults_markdown, adults_summary
from pepx.evaluation.bootstrap import bootstrap_metrics, metric_samples, patient_resamples
from pepx.evaluation.breakdown import breakdown, fill_columns, missing_columns
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.metrics import PROB_COLUMNS, compute_metrics, confusion_matrix, mean_predictions
from pepx.release.card import caveats_from_adults
from pepx.serving.bundle import Bundle


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


# ---------------------------------------------------------------------- adults only, by view
def _adults_and_children() -> pd.DataFrame:
    """30 adults with a known confusion matrix (views alternate AP / PA) and 50 children, all right, who
    must not count in the adults-only table."""
    adults = frame_from_confusion(np.array([[8, 1, 1], [2, 7, 1], [0, 3, 7]])).assign(age_group="adult")
    adults["view"] = np.where(np.arange(len(adults)) % 2 == 0, "AP", "PA")
    children = pd.DataFrame({"y_true": [1] * 50, "y_pred": [1] * 50, "age_group": "pediatric",
                             "view": "AP/PA"})
    frame = pd.concat([adults, children], ignore_index=True)
    return frame.assign(path=[f"/img/{i}.png" for i in range(len(frame))],
                        patient_id=[f"p{i}" for i in range(len(frame))],
                        label=[CLASSES[k] for k in frame["y_true"]], source="h", split="test")


def test_adults_only_table_equals_a_hand_computation():
    summary = adults_summary(_adults_and_children(), n_boot=300)
    assert summary["note"] is None and summary["n_images"] == summary["n_patients"] == 30
    table = summary["metrics"].set_index("metric")
    expected = {"accuracy": 22 / 30, "recall_normal": 8 / 10, "recall_pneumonia": 7 / 10,
                "recall_COVID-19": 7 / 10, "precision_normal": 8 / 10, "precision_pneumonia": 7 / 11,
                "precision_COVID-19": 7 / 9}
    for name, value in expected.items():
        row = table.loc[name]
        assert row["value"] == pytest.approx(value, abs=1e-6), name
        assert row["low"] <= row["value"] <= row["high"] and row["high"] - row["low"] > 0.05, name
    per_class = summary["per_class"].set_index("class")
    assert per_class.loc["pneumonia", ["recall", "precision"]].tolist() == pytest.approx([7 / 10, 7 / 11])
    assert per_class["n_images"].tolist() == [10, 10, 10]
    assert per_class["n_predicted"].tolist() == [10, 11, 9]
    np.testing.assert_array_equal(summary["confusion_matrix"], [[8, 1, 1], [2, 7, 1], [0, 3, 7]])
    by_view = summary["by_view"].set_index("group")
    assert by_view["n_images"].to_dict() == {"AP": 15, "PA": 15} and "AP/PA" not in by_view.index
    text = "\n".join(adults_markdown(summary))
    assert "30 adult images of 30 patients" in text and "Accuracy 0.733 [" in text
    row = next(line for line in text.splitlines() if line.startswith("| Non-COVID | 10 | 10 | 11 | 0.700 ["))
    assert "] | 0.636 [" in row and "### Adults by view" in text


def test_adults_only_table_says_why_it_is_absent_or_undefined():
    no_pneumonia = adults_summary(fake_predictions(20, seed=7), n_boot=200)  # adults: normal and COVID-19
    table = no_pneumonia["metrics"].set_index("metric")
    assert np.isnan(table.loc["recall_pneumonia", "value"]) and table.loc["recall_normal", "value"] > 0.5
    assert no_pneumonia["by_view"] is None
    text = "\n".join(adults_markdown(no_pneumonia))
    assert "| Non-COVID | 0 | 0 |" in text and "No view is recorded for these images" in text
    children = fake_predictions(10, seed=8).assign(age_group="pediatric")
    assert adults_summary(children) == {"note": "No adults-only table: none of these 30 images is from an "
                                                "adult (age groups: pediatric)."}
    unknown = adults_summary(children.drop(columns=["age_group"]))
    assert adults_markdown(unknown, heading="###") == [
        "### Adults only: normal / pneumonia / COVID-19", "",
        "No adults-only table: no age group is recorded for these images.", ""]


def test_evaluation_report_has_the_adults_table_and_the_by_view_breakdown(tmp_path):
    summary = evaluate_predictions(_adults_and_children(), tmp_path / "with", n_boot=200)
    data = json.loads((tmp_path / "with" / "metrics.json").read_text())
    adults = {m["metric"]: m["value"] for m in data["adults"]["metrics"]}
    assert adults["accuracy"] == pytest.approx(22 / 30) and data["adults"]["n_images"] == 30
    assert {g["group"] for g in data["breakdowns"]["view"]} == {"AP", "PA", "AP/PA"}
    report = (tmp_path / "with" / "report.md").read_text()
    assert report.index("## Metrics") < report.index("## Adults only") < report.index("## Confusion matrix")
    assert "## By view" in report and "| AP/PA | 50 | 50 |" in report
    assert set(summary["breakdowns"]) == {"source", "age_group", "view"}
    evaluate_predictions(fake_predictions(20, seed=6), tmp_path / "without", n_boot=200)
    report = (tmp_path / "without" / "report.md").read_text()
    assert "## By view\n\nNot recorded for these images: no breakdown by view." in report
    assert "No view is recorded for these images: no adults-by-view table." in report


def test_fill_columns_takes_what_predictions_lack_from_the_split():
    preds = fake_predictions(5, seed=9)
    split = preds[["path", "label"]].assign(view="PA", age_group="adult").head(12)
    filled = fill_columns(preds, split)
    assert filled["view"].head(12).eq("PA").all() and filled["view"].iloc[12:].isna().all()
    assert filled["age_group"].equals(preds["age_group"])  # recorded already: left as it is
    assert missing_columns(preds) == ["view"] and missing_columns(filled) == []
    assert fill_columns(filled, split) is filled


def test_caveats_count_the_adult_calls_of_each_class_by_hand():
    """The sentence `pepx predict` shows next to a call (issue 15 item 5), from the adults-only confusion
    matrix [[8, 1, 1], [2, 7, 1], [0, 3, 7]] (rows: truth): children, all right, must not count."""
    summary = adults_summary(_adults_and_children(), n_boot=300)
    caveats = caveats_from_adults(summary)
    assert list(caveats) == list(CLASSES)
    assert caveats["COVID-19"].startswith("Of the 9 adult test films this model called COVID-19, 2 were not "
                                          "(1 Normal, 1 Non-COVID): precision 0.778 [")
    assert caveats["COVID-19"].endswith("it missed 3 of 10 adult COVID-19 films.")
    assert caveats["pneumonia"].startswith("Of the 11 adult test films this model called Non-COVID, 4 were "
                                           "not (1 Normal, 3 COVID-19): precision 0.636 [")
    assert "it missed 2 of 10 adult Normal films" in caveats["normal"]
    bundle = Bundle(Path("b"), {"caveats": caveats}, "", {})
    assert bundle.caveat("COVID-19") == caveats["COVID-19"]
    assert Bundle(Path("b"), {}, "", {}).caveat("COVID-19") is None and bundle.caveat(None) is None
    children = _adults_and_children().query("age_group == 'pediatric'")
    assert caveats_from_adults(adults_summary(children)) == {}
