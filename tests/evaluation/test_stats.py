"""McNemar's exact test, Holm's correction and the paired comparison table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from fakes.runs import fake_predictions
from pepx.evaluation.stats import holm, mcnemar, pairwise_tests


def _pairs(b: int, c: int, both: int = 5) -> tuple[np.ndarray, np.ndarray]:
    a = np.r_[np.ones(b, bool), np.zeros(c, bool), np.ones(both, bool)]
    other = np.r_[np.zeros(b, bool), np.ones(c, bool), np.ones(both, bool)]
    return a, other


def test_mcnemar_identical_predictions_p_is_one():
    correct = np.random.default_rng(0).random(300) < 0.9
    res = mcnemar(correct, correct)
    assert (res.b, res.c, res.pvalue) == (0, 0, 1.0)
    assert mcnemar(correct, correct, mid_p=True).pvalue == 1.0


def test_mcnemar_matches_hand_computed_binomial():
    res = mcnemar(*_pairs(10, 2))
    assert (res.b, res.c) == (10, 2)
    # two-sided exact: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert res.pvalue == pytest.approx(158 / 4096)
    assert mcnemar(*_pairs(2, 10)).pvalue == pytest.approx(158 / 4096)  # symmetric
    assert mcnemar(*_pairs(10, 2), mid_p=True).pvalue == pytest.approx(158 / 4096 - binom.pmf(2, 12, 0.5))
    assert mcnemar(*_pairs(3, 3)).pvalue == 1.0


def test_holm_adjustment():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5])
    np.testing.assert_allclose(holm([0.5, 0.5]), [1.0, 1.0])
    assert holm([0.02]).tolist() == [0.02]


def test_pairwise_tests_say_better_only_when_significant():
    strong = fake_predictions(100, accuracy=0.95, seed=1)
    weak = fake_predictions(100, accuracy=0.6, seed=2)
    twin = strong.copy()
    table = pairwise_tests({"strong": strong, "weak": weak, "twin": twin},
                           [("strong", "weak"), ("strong", "twin"), ("weak", "twin")], n_boot=300)
    rows = table.set_index(["a", "b"])
    assert rows.loc[("strong", "weak"), "verdict"] == "strong better"
    assert rows.loc[("strong", "weak"), "diff_low"] > 0
    assert rows.loc[("strong", "twin"), "p"] == 1.0
    assert rows.loc[("strong", "twin"), "verdict"] == "no significant difference"
    assert (table["p_holm"] >= table["p"]).all()
    assert table.iloc[2]["verdict"] == "twin better"
