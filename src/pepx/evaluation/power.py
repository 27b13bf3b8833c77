"""Power of the exact McNemar test, and the smallest accuracy difference it can detect.

Two classifiers on the same ``n`` images: an image is discordant with probability ``psi`` (one right, the
other wrong); the accuracy difference is ``delta = P(only A right) - P(only B right)``. Given the number ``m``
of discordant images, ``b ~ Binomial(m, (psi + delta) / (2 psi))``, and the exact two-sided test
(`stats.mcnemar`) rejects where ``2 * F(min(b, m - b); m, 1/2) <= alpha``. The power sums that over ``m ~
Binomial(n, psi)``, so it is the rejection rate of fresh data sets of ``n`` images with this discordance -
what a simulation gives.

:func:`detectable_difference` is the smallest ``delta`` with power >= 80 % at the observed discordance
``psi = (b + c) / n``: below it a real difference would usually be missed, so "no significant difference"
says little about differences smaller than that. Hand-written: scipy and statsmodels give McNemar's p-value,
not its power.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binom

POWER = 0.8


def _critical(m: np.ndarray, alpha: float) -> np.ndarray:
    """Largest ``k`` with ``2 F(k; m, 1/2) <= alpha`` for each ``m`` (``-1`` where none: no rejection)."""
    k = binom.ppf(alpha / 2, m, 0.5)
    k = np.where(2 * binom.cdf(k, m, 0.5) <= alpha * (1 + 1e-12), k, k - 1)
    return np.where(m > 0, k, -1)


def mcnemar_power(n: int, discordance: float, delta: float, alpha: float = 0.05) -> float:
    """Probability that the exact McNemar test at level ``alpha`` rejects, for ``n`` paired images with
    discordance rate ``discordance`` and accuracy difference ``delta`` (``|delta| <= discordance``)."""
    psi, delta = float(discordance), abs(float(delta))
    if psi <= 0 or n <= 0:
        return 0.0
    if delta > psi + 1e-12:
        raise ValueError(f"|delta| = {delta} cannot exceed the discordance {psi}")
    pi = min(1.0, (psi + delta) / (2 * psi))
    m = np.arange(n + 1)
    k = _critical(m, alpha)
    reject = np.where(k >= 0, binom.cdf(k, m, pi) + binom.sf(m - k - 1, m, pi), 0.0)
    return float(np.clip(np.sum(binom.pmf(m, n, psi) * np.minimum(reject, 1.0)), 0.0, 1.0))


def detectable_difference(n: int, n_discordant: int, alpha: float = 0.05, power: float = POWER) -> float:
    """Smallest accuracy difference (a fraction) the exact McNemar test detects with probability ``power``
    at level ``alpha`` on ``n`` images of which ``n_discordant`` are discordant; NaN when even the largest
    possible difference (every discordant image going one way) is detected less often than that."""
    if n <= 0 or n_discordant <= 0:
        return float("nan")
    psi = n_discordant / n
    if mcnemar_power(n, psi, psi, alpha) < power:
        return float("nan")
    if mcnemar_power(n, psi, 0.0, alpha) >= power:
        return 0.0
    return float(brentq(lambda d: mcnemar_power(n, psi, d, alpha) - power, 0.0, psi, xtol=1e-6))
