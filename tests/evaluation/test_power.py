"""pepx.evaluation.power: McNemar's power against a simulation, and the detectable difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pepx.evaluation.power import detectable_difference, mcnemar_power
from pepx.evaluation.stats import mcnemar, pairwise_tests


def _simulated_power(n: int, psi: float, delta: float, alpha: float, sims: int, seed: int = 0) -> float:
    """Rejection rate of `stats.mcnemar` on fresh paired data sets: each image is 'only A right' with
    probability (psi + delta) / 2, 'only B right' with (psi - delta) / 2, concordant otherwise."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(sims):
        u = rng.random(n)
        only_a, only_b = u < (psi + delta) / 2, (u >= (psi + delta) / 2) & (u < psi)
        rejected += mcnemar(only_a, only_b).pvalue <= alpha
    return rejected / sims


@pytest.mark.parametrize(("n", "m", "alpha"), [(300, 40, 0.05), (600, 45, 0.05 / 9)])
def test_detectable_difference_has_80_percent_power_in_a_simulation(n, m, alpha):
    delta = detectable_difference(n, m, alpha=alpha)
    assert 0 < delta < m / n
    assert mcnemar_power(n, m / n, delta, alpha) == pytest.approx(0.8, abs=1e-4)
    assert _simulated_power(n, m / n, delta, alpha, sims=2000) == pytest.approx(0.8, abs=0.03)
    # half that difference is usually missed
    assert _simulated_power(n, m / n, delta / 2, alpha, sims=1000, seed=1) < 0.5


def test_power_is_alpha_or_less_without_a_difference_and_grows_with_n():
    assert mcnemar_power(300, 0.1, 0.0, 0.05) <= 0.05
    assert detectable_difference(300, 40) > detectable_difference(3000, 400) > 0  # same discordance rate
    assert detectable_difference(300, 40, alpha=0.005) > detectable_difference(300, 40, alpha=0.05)


def test_too_few_discordant_images_detect_nothing():
    # 4 discordant images: even 4-0 gives p = 0.125 > 0.05
    assert np.isnan(detectable_difference(100, 4))
    assert np.isnan(detectable_difference(100, 0))
    assert mcnemar_power(100, 0.04, 0.04, 0.05) < 0.8


def test_pairwise_tests_report_the_detectable_difference():
    rng = np.random.default_rng(0)
    n = 200
    y = np.arange(n) % 3
    frame = pd.DataFrame({"path": [f"i{k}" for k in range(n)], "patient_id": [f"p{k}" for k in range(n)],
                          "y_true": y})
    a = frame.assign(y_pred=np.where(rng.random(n) < 0.9, y, (y + 1) % 3))
    b = frame.assign(y_pred=np.where(rng.random(n) < 0.8, y, (y + 1) % 3))
    c = frame.assign(y_pred=y)
    table = pairwise_tests({"a": a, "b": b, "c": c}, [("a", "b"), ("a", "c")], n_boot=100)
    row = table.iloc[0]
    assert row["n"] == n
    assert row["detectable"] == pytest.approx(
        detectable_difference(n, row["b_only_a"] + row["c_only_b"], alpha=0.05 / 2))
    assert list(table.columns)[-2:] == ["detectable", "verdict"]
