"""`pepx reproduce`: paper numbers, tables and figures from fake run folders, and a tiny end-to-end grid."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from fakes.runs import fake_grid
from pepx.cli import main
from pepx.errors import ConfigError
from pepx.evaluation.report import fmt_ci
from pepx.experiments import get_profile, reproduce
from pepx.experiments.grid import prepare
from pepx.experiments.paper import paper_frame, paper_value
from pepx.experiments.reproduce import comparison_pairs

PNGS = ("figure9.png", "figure10.png", "figure_abc.png", "headline/confusion_matrix.png",
        "headline/reliability.png")


def _assert_pngs(out: Path, names=PNGS) -> None:
    for name in names:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_paper_numbers_verbatim():
    assert paper_value(1, "pepx_resnet") == 0.95666
    assert paper_value(1, "resnet18") == 0.94667
    assert paper_value(1, "covidnet") == 0.933
    assert paper_value(2, "resnet18", "pneumonia") == 0.95237
    assert paper_value(3, "pepx_resnet", "COVID-19") == 0.99
    assert paper_value(4, "covidnet", "normal") == 0.9268
    assert paper_frame(4).loc["This work"].tolist() == [0.932, 0.9559, 0.979]
    assert paper_value(1, "unknown_net") is None


def test_comparison_pairs_cover_each_loss_and_the_headline():
    cells = [(m, l) for m in ("pepx_resnet", "resnet18", "covidnet") for l in ("ce", "focal")]
    pairs = comparison_pairs(cells)
    assert len(pairs) == len(set(pairs)) == 9  # 3 per loss x 2 + headline vs the 3 other-loss cells
    assert all(a[1] == b[1] for a, b in pairs[:6])
    assert {b for a, b in pairs if a == ("pepx_resnet", "focal")} == set(cells) - {("pepx_resnet", "focal")}


def _fake_grid(out: Path, profile) -> None:
    fake_grid(out, profile, {"pepx_resnet": 0.95, "resnet18": 0.9, "covidnet": 0.6},
              seed=lambda run: run.seed + 10 * len(run.loss))


def test_report_tables_and_figures_from_fake_runs(tmp_path):
    profile = get_profile("smoke", epochs=4, seeds=2, n_boot=200)
    out = tmp_path / "grid"
    _fake_grid(out, profile)
    logs: list[str] = []
    report = reproduce(profile=profile, out=out, log=logs.append)
    assert sum("complete, skipped" in line for line in logs) == 12  # nothing trained
    text = report.read_text()
    for number in ("0.95666", "0.94667", "0.933", "0.95237", "0.9559", "0.979"):  # the paper's
        assert number in text
    # issue 18 item 6: says first that it is a synthetic smoke test, not comparable with the paper
    lines = text.splitlines()
    assert lines[0] == "# pepx reproduce — profile `smoke`: a synthetic smoke test"
    assert lines[2].startswith("> **A synthetic smoke test, not comparable with the paper.**")
    # one headline number, defined, and the same as the linked headline report's (the seed ensemble)
    saved = json.loads((out / "headline" / "metrics.json").read_text())
    acc = next(m for m in saved["metrics"] if m["metric"] == "accuracy")
    head = next(line for line in lines if line.startswith("**Headline"))
    assert head.startswith(f"**Headline: accuracy {fmt_ci(acc['value'], acc['low'], acc['high'])}** "
                           "(PEPX-ResNet + focal; the paper's number is not comparable with synthetic films)")
    assert "Definition: the share of the 90 test images whose most probable class, averaging the 2 seeds'" \
        in head
    assert "Table 1 gives instead the mean of the seeds' own accuracies" in head
    # plain-English titles and rows; the paper's words (typos included) only in the footnote
    assert "Table 1. Accuracy of each network." in text and "Table 4. F1 score of each class." in text
    tables = text.split("## Tables 1–4", 1)[1].split("<sub>", 1)
    assert not any(w in tables[0] for w in ("Precious", "Sensitive", "Resnet18", "This work"))
    note = tables[1].split("</sub>")[0]
    assert all(w in note for w in ('"Precious', '"Sensitive', '"Resnet18"', '"This work"'))
    assert " ± " in text and "softmax CE" in text
    assert "Warning: the data let a shortcut through" in text  # hospital_c holds only COVID-19
    assert "### By source" in text and "### By age_group" in text
    # by view: the runs' predictions.csv lack `view`; it comes from each run's split.csv
    by_view = text.split("### By view", 1)[1].split("##", 1)[0]
    assert "| AP | 45 | 45 | 0 | 15 | 30 |" in by_view and "| PA | 45 | 45 | 30 | 15 | 0 |" in by_view
    # the adults-only table sits beside the headline, before Tables 1-4 (adults: 30 normal + 30 COVID-19)
    adults = text.split("## Adults only: normal / pneumonia / COVID-19 (PEPX-ResNet + focal)", 1)[1]
    assert "## Tables 1–4" in adults and "60 adult images of 60 patients" in adults.split("## Tables", 1)[0]
    assert "### Adults by view" in adults.split("## Tables", 1)[0]
    headline = json.loads((out / "headline" / "metrics.json").read_text())["adults"]
    ensemble = pd.read_csv(out / "headline" / "predictions.csv")
    grown = ensemble[ensemble["age_group"] == "adult"]
    accuracy = next(m["value"] for m in headline["metrics"] if m["metric"] == "accuracy")
    assert accuracy == pytest.approx((grown["y_true"] == grown["y_pred"]).mean())
    assert "Paired tests" in text and "per seed (Holm < 0.05)" in text and "COVID-Net + focal" in text
    assert "Configuration and provenance" in text and "torchmetrics" in text
    for k in range(1, 5):
        table = pd.read_csv(out / f"table{k}.csv")
        assert len(table) == 6 and (table["n_seeds"] == 2).all()
        assert (out / f"table{k}.md").read_text().startswith(f"**Table {k}.")
    table1 = pd.read_csv(out / "table1.csv").set_index(["model", "loss"])
    row = table1.loc[("pepx_resnet", "focal")]
    assert row["Accuracy_low"] <= row["Accuracy_mean"] <= row["Accuracy_high"]
    assert row["Accuracy_paper"] == 0.95666
    tests = pd.read_csv(out / "paired_tests.csv").set_index(["a", "b"])
    strong = tests.loc[("PEPX-ResNet + focal", "COVID-Net + focal")]
    assert strong["p_holm"] < 0.05 and strong["verdict"] == "PEPX-ResNet + focal better"
    _assert_pngs(out)


def test_prepare_refuses_an_out_made_with_other_settings(tmp_path):
    out = tmp_path / "grid"
    _fake_grid(out, get_profile("smoke", epochs=4, seeds=1))
    prepare(get_profile("smoke", epochs=4, seeds=3), out)  # seeds may change: the runs are reused
    with pytest.raises(ConfigError, match="epochs"):
        prepare(get_profile("smoke", epochs=5), out)


@pytest.mark.slow
def test_reproduce_and_evaluate_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PEPX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "smoke"
    args = ["reproduce", "--profile", "smoke", "--data", "synthetic:n_per_class=24,size=64",
            "--n-train", "12", "--n-test", "6", "--epochs", "2", "--seeds", "1", "--out", str(out)]
    start = time.perf_counter()
    assert main(args) == 0
    assert time.perf_counter() - start < 90
    text = (out / "report.md").read_text()
    assert "Table 1" in text and "0.95666" in text and "Paired tests" in text
    for k in range(1, 5):
        assert (out / f"table{k}.csv").exists() and (out / f"table{k}.md").exists()
    _assert_pngs(out)
    timings = json.loads((out / "timings.json").read_text())
    assert len(timings) == 6

    assert main(args) == 0  # a second call finds every run complete and only rewrites the report
    assert json.loads((out / "timings.json").read_text()) == timings

    run = out / "runs" / "pepx_resnet-focal-seed0"
    assert main(["evaluate", str(run), "--n-boot", "200"]) == 0
    evaluated = pd.read_csv(run / "eval" / "predictions.csv")
    trained = pd.read_csv(run / "predictions.csv")
    assert evaluated["y_pred"].tolist() == trained["y_pred"].tolist()  # same model, same test images
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert {m["metric"] for m in metrics["metrics"]} >= {"accuracy", "macro_f1", "ece"}
    _assert_pngs(run / "eval", ("confusion_matrix.png", "reliability.png"))
