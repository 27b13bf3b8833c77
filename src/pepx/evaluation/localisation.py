"""How well saliency maps find known lesions: pointing game and energy in the lesion, against a uniform map.

- **Pointing game** (Zhang et al., ECCV 2016): a hit when the map's maximum lies inside the lesion mask (the
  strict form, no tolerance margin; ties: the first maximum in row-major order).
- **Energy in the lesion**: the share of the map's total mass inside the mask (the "energy-based pointing
  game" of Score-CAM, Wang et al. 2020).

A uniform map puts its maximum at a random pixel and spreads its mass evenly, so its expected hit rate and
energy share both equal the mask's area fraction: the baseline a map must beat. Intervals resample patients
(`pepx.evaluation.bootstrap.patient_resamples`), percentile 95 %.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pepx.evaluation.bootstrap import LEVEL, N_BOOT, patient_resamples, percentile_interval


def pointing_hit(heat: np.ndarray, mask: np.ndarray) -> bool:
    """True when the maximum of `heat` falls inside `mask` (same shape)."""
    if heat.shape != mask.shape:
        raise ValueError(f"map {heat.shape} and mask {mask.shape} differ in shape")
    return bool(mask.flat[int(np.argmax(heat))])


def energy_share(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the (non-negative) map's mass inside `mask`; NaN for an all-zero map."""
    if heat.shape != mask.shape:
        raise ValueError(f"map {heat.shape} and mask {mask.shape} differ in shape")
    heat = np.clip(heat, 0, None)
    total = float(heat.sum())
    return float(heat[mask.astype(bool)].sum()) / total if total > 0 else float("nan")


def localisation_scores(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> pd.DataFrame:
    """Per image: `hit`, `energy`, and the uniform map's expectations `area` (= both baselines)."""
    rows = [{"hit": pointing_hit(h, m), "energy": energy_share(h, m), "area": float(np.mean(m.astype(bool)))}
            for h, m in zip(maps, masks, strict=True)]
    return pd.DataFrame(rows, columns=["hit", "energy", "area"])


def localisation_table(scores: pd.DataFrame, patients: Sequence, n_boot: int = N_BOOT, seed: int = 0,
                       level: float = LEVEL) -> pd.DataFrame:
    """``metric, value, low, high``: pointing-game hit rate, mean energy share, the uniform baseline (mean
    area fraction), and each score's gain over the baseline (paired, same resamples)."""
    index = patient_resamples(list(patients), None, n_boot, seed).numpy()
    valid = index >= 0
    safe = np.where(valid, index, 0)
    values = {k: scores[k].to_numpy(dtype=np.float64) for k in ("hit", "energy", "area")}

    def boot(v: np.ndarray) -> np.ndarray:
        x = np.where(valid, v[safe], np.nan)
        return np.nanmean(x, axis=1)

    samples = {k: boot(v) for k, v in values.items()}
    point = {k: float(np.nanmean(v)) for k, v in values.items()}
    rows = [("pointing_game", point["hit"], *percentile_interval(samples["hit"], level)),
            ("energy_in_lesion", point["energy"], *percentile_interval(samples["energy"], level)),
            ("uniform_baseline", point["area"], *percentile_interval(samples["area"], level)),
            ("pointing_game_gain", point["hit"] - point["area"],
             *percentile_interval(samples["hit"] - samples["area"], level)),
            ("energy_gain", point["energy"] - point["area"],
             *percentile_interval(samples["energy"] - samples["area"], level))]
    return pd.DataFrame(rows, columns=["metric", "value", "low", "high"])


__all__ = ["energy_share", "localisation_scores", "localisation_table", "pointing_hit"]
