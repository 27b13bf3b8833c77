"""One class vocabulary (the bundle's `class_display`) in `pepx predict`'s table, CSV and JSON, a one-line
legend for `flagged`, and a compact table: file names, full paths kept for `--out`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pepx.serving import Predictor, files
from pepx.serving.predictor import Prediction


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_bundle(None, device="cpu")  # the shipped bundle: Normal / Non-COVID / COVID-19


def _preds() -> list[Prediction]:
    return [Prediction("/films/ward-a/a.png", "pneumonia", {"normal": 0.1, "pneumonia": 0.5, "COVID-19": 0.4},
                       flagged=("COVID-19",)),
            Prediction("/films/ward-b/b.png", "normal", {"normal": 0.8, "pneumonia": 0.15, "COVID-19": 0.05})]


def test_table_speaks_the_bundles_names_and_explains_flagged(predictor) -> None:
    lines = files.report(predictor, _preds())
    table = lines[1].splitlines()
    assert table[0].split() == ["file", "class", "Normal", "Non-COVID", "COVID-19", "flagged"]
    assert table[1].split() == ["a.png", "Non-COVID", "0.100", "0.500", "0.400", "COVID-19"]
    assert table[2].split() == ["b.png", "Normal", "0.800", "0.150", "0.050"]
    threshold = predictor.bundle.thresholds["COVID-19"]
    assert lines[-1] == (f"flagged: the class's probability reached its operating point (COVID-19 >= "
                         f"{threshold:.3f}, chosen for 95 % sensitivity on validation films), whether or not "
                         "it is the most probable class")
    assert "pneumonia" not in "\n".join(lines) and "/films/" not in "\n".join(lines)
    assert not any(line.startswith("flagged:") for line in files.report(predictor, _preds()[1:]))


def test_csv_and_json_use_the_same_names_and_full_paths(predictor, tmp_path) -> None:
    files.report(predictor, _preds(), out=str(tmp_path / "p.csv"))
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame["source"]) == ["/films/ward-a/a.png", "/films/ward-b/b.png"]
    assert list(frame["label"]) == ["Non-COVID", "Normal"] and list(frame.columns[3:6]) == [
        "prob_Normal", "prob_Non-COVID", "prob_COVID-19"]
    assert frame.loc[0, "flagged"] == "COVID-19"
    files.report(predictor, _preds(), out=str(tmp_path / "p.json"))
    rows = json.loads((tmp_path / "p.json").read_text())
    assert rows[0]["label"] == "Non-COVID" and rows[0]["prob_Non-COVID"] == 0.5
