""""Easier to optimise": the corrected paired t-test over folds, the early-epoch table and its figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from fakes.runs import fake_metrics_csv
from pepx.experiments.figures import optimisation_figure
from pepx.experiments.grid import GridRun
from pepx.experiments.optimisation import (
    corrected_t,
    early_epoch,
    early_epoch_tests,
    holdout_ratio,
    optimisation_section,
)


def _curve(loss_at_3: float, acc_at_3: float, epochs: int = 6) -> pd.DataFrame:
    """A metrics.csv frame whose epoch-3 values are the ones given (other epochs differ: must not be used)."""
    frame = pd.DataFrame({"epoch": range(1, epochs + 1), "train_loss": 9.0, "test_acc": 0.0})
    return frame.assign(**{c: np.where(frame["epoch"] == 3, v, frame[c])
                           for c, v in (("train_loss", loss_at_3), ("test_acc", acc_at_3))})


def test_corrected_t_is_the_paired_t_test_without_correction_and_wider_with_it():
    a = np.array([0.81, 0.78, 0.84, 0.80, 0.83])
    b = np.array([0.78, 0.77, 0.80, 0.79, 0.78])
    mean, low, high, p = corrected_t(a - b, ratio=0.0)
    assert p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high)) and mean == pytest.approx(0.028)
    # Nadeau & Bengio: variance (1/5 + 1/4) s^2 instead of s^2 / 5
    _, low_c, high_c, p_c = corrected_t(a - b, ratio=0.25)
    t = 0.028 / np.sqrt((1 / 5 + 0.25) * np.var(a - b, ddof=1))
    assert p_c == pytest.approx(2 * stats.t.sf(t, 4)) and p_c > p and high_c - low_c > high - low
    assert np.isnan(corrected_t([0.1], 0.25)[3])  # one fold: nothing to test
    assert corrected_t([0.02, 0.02, 0.02], 0.5)[3] == 0.0 and corrected_t([0, 0, 0], 0.5)[3] == 1.0


def test_early_epoch_tests_pair_folds_average_seeds_and_read_only_the_chosen_epoch():
    rng = np.random.default_rng(0)
    folds = {("pepx_resnet", "focal"): {}, ("resnet18", "focal"): {}, ("covidnet", "focal"): {}}
    for k in range(5):
        base = 0.7 + 0.05 * k  # folds differ a lot; the pairing removes it
        folds[("pepx_resnet", "focal")][k] = [_curve(0.30, base + 0.06 + rng.normal(0, 0.005)),
                                              _curve(0.30, base + 0.04 + rng.normal(0, 0.005))]  # 2 seeds
        folds[("resnet18", "focal")][k] = [_curve(0.40 + rng.normal(0, 0.01), base)]
        folds[("covidnet", "focal")][k] = [_curve(0.30 + rng.normal(0, 0.02), base + rng.normal(0, 0.03))]
    table = early_epoch_tests(folds, epoch=3, ratio=0.25).set_index(["b", "measure"])
    acc = table.loc[("ResNet18 + focal", "test_acc")]
    expected = np.mean([np.mean([f.loc[2, "test_acc"] for f in folds[("pepx_resnet", "focal")][k]])
                        - folds[("resnet18", "focal")][k][0].loc[2, "test_acc"] for k in range(5)])
    assert acc["diff"] == pytest.approx(expected) and acc["diff"] == pytest.approx(0.05, abs=0.005)
    assert acc["n_folds"] == 5 and acc["epoch"] == 3
    assert acc["verdict"] == "PEPX-ResNet + focal ahead"
    assert table.loc[("ResNet18 + focal", "train_loss"), "verdict"] == "PEPX-ResNet + focal lower loss"
    assert table.loc[("COVID-Net + focal", "test_acc"), "verdict"] == "no significant difference"
    raw = np.sort(table["p"].to_numpy())
    assert table["p_holm"].min() == pytest.approx(min(1.0, 4 * raw[0]))  # Holm over the 4 rows
    assert early_epoch(folds) == 3 and early_epoch(folds, epoch=10) == 6
    one = {c: {0: f[0]} for c, f in folds.items()}
    assert set(early_epoch_tests(one, 3, 0.25)["verdict"]) == {"not tested (1 fold)"}


def test_holdout_ratio_counts_training_only_rows_as_training():
    folded = pd.DataFrame({"fold": [0] * 10 + [1] * 10 + [-1] * 20})
    assert holdout_ratio(folded, [0, 1]) == pytest.approx(10 / 30)


def test_optimisation_figure_has_a_row_per_loss(tmp_path):
    cells = {(m, loss): [_curve(0.3, 0.8), _curve(0.35, 0.75)] for m in ("pepx_resnet", "resnet18")
             for loss in ("ce", "focal")}
    with Image.open(optimisation_figure(cells, tmp_path / "two.png", unit="folds", mark_epoch=3)) as im:
        two = im.size
    one = {c: f for c, f in cells.items() if c[1] == "focal"}
    with Image.open(optimisation_figure(one, tmp_path / "one.png", unit="folds")) as im:
        assert im.format == "PNG" and im.size[0] == two[0] and two[1] > 1.8 * im.size[1]


def test_optimisation_section_with_pepx_resnet_alone_says_there_is_nothing_to_compare(tmp_path):
    grid = {("pepx_resnet", "focal"): {GridRun("pepx_resnet", "focal", 0, fold): fake_metrics_csv(
        tmp_path / f"run{fold}" / "metrics.csv", epochs=5, seed=fold).parent for fold in range(2)}}
    folded = pd.DataFrame({"fold": [0] * 5 + [1] * 5})
    text = "\n".join(optimisation_section(grid, folded, [0, 1], tmp_path))
    assert "Paired test at epoch 3 of 5:" in text
    assert "Nothing to compare: no other network was trained with PEPX-ResNet's loss" in text
    assert pd.read_csv(tmp_path / "optimisation.csv").empty
    assert (tmp_path / "figure_optimisation.png").exists()
