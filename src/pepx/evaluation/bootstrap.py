"""Patient-level (cluster) bootstrap confidence intervals, vectorised over resamples.

A resample draws *patients* with replacement, separately within each class (test sets are balanced by
design, so each class keeps its number of patients), and takes all images of every drawn patient. Images of
one patient are not independent evidence, so they move together. Intervals are percentile intervals of the
resampled statistic; the generator is seeded, so the same call gives the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from pepx.errors import ConfigError
from pepx.evaluation.metrics import batched_metrics, frame_arrays, metric_names

N_BOOT = 2000
LEVEL = 0.95


#: Most bootstrap resamples (beyond it the CIs do not move, and a typo would run for hours).
MAX_BOOT = 100_000


def check_bootstrap(n_boot: int, level: float = LEVEL) -> None:
    """Raise `ConfigError` unless 1 <= ``n_boot`` <= `MAX_BOOT` and 0 < ``level`` < 1."""
    if not 1 <= n_boot <= MAX_BOOT:
        raise ConfigError(f"n_boot must be >= 1 and <= {MAX_BOOT} (bootstrap resamples), got {n_boot}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")


def patient_resamples(patients: Sequence, strata: Sequence | None = None, n_boot: int = N_BOOT,
                      seed: int = 0) -> torch.Tensor:
    """Image-index sets of ``n_boot`` patient resamples: a LongTensor ``[n_boot, L]`` padded with ``-1``.

    ``patients`` holds one id per image; ``strata`` (e.g. the label) one value per image, constant within a
    patient (the first image's value is used). Patients are drawn with replacement within each stratum.
    """
    pid_codes, pid_uniques = pd.factorize(pd.Series(list(patients)), sort=False)
    order = np.argsort(pid_codes, kind="stable")                      # images grouped by patient
    counts = np.bincount(pid_codes, minlength=len(pid_uniques))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    first = order[starts]                                              # first image of each patient
    stratum = (np.zeros(len(pid_uniques), dtype=np.int64) if strata is None
               else pd.factorize(pd.Series(list(strata)).iloc[first].to_numpy())[0])
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([
        members[rng.integers(0, len(members), size=(n_boot, len(members)))]
        for members in (np.flatnonzero(stratum == s) for s in np.unique(stratum))
    ], axis=1)                                                          # [n_boot, n_patients] patient ids
    c = counts[chosen]                                                  # images per drawn patient
    flat_c = c.ravel()
    image_start = np.repeat(starts[chosen.ravel()], flat_c)
    within = np.arange(flat_c.sum()) - np.repeat(np.cumsum(flat_c) - flat_c, flat_c)
    images = order[image_start + within]
    row_len = c.sum(axis=1)
    rows = np.repeat(np.arange(n_boot), row_len)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(row_len) - row_len, row_len)
    index = np.full((n_boot, int(row_len.max())), -1, dtype=np.int64)
    index[rows, cols] = images
    return torch.as_tensor(index)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (NaNs, i.e. undefined resamples, ignored)."""
    alpha = (1.0 - level) / 2.0
    if np.isnan(samples).all():
        return float("nan"), float("nan")
    low, high = np.nanquantile(samples, [alpha, 1.0 - alpha])
    return float(low), float(high)


def align_frames(frames: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """Frames reordered to the first frame's ``path`` order (runs on the same test images)."""
    if len(frames) == 1:
        return list(frames)
    paths = frames[0]["path"]
    return [frames[0]] + [f.set_index("path").loc[paths].reset_index() for f in frames[1:]]


def metric_samples(frames: pd.DataFrame | Sequence[pd.DataFrame], n_boot: int = N_BOOT, seed: int = 0,
                   with_ece: bool = True) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Point estimates and ``[n_boot]`` bootstrap samples of every metric (ECE only with ``with_ece``, the
    slow one: torchmetrics has no batched calibration error, so it loops over resamples).

    With several frames (seeds of one configuration on the same images) both are the mean over frames, and the
    same patient resamples are applied to every frame: the interval is that of the seed-averaged metric under
    resampling of the test patients.
    """
    frames = align_frames([frames] if isinstance(frames, pd.DataFrame) else list(frames))
    index = patient_resamples(frames[0]["patient_id"], frames[0]["y_true"], n_boot=n_boot, seed=seed)
    points, samples = [], []
    for f in frames:
        arrays = frame_arrays(f)
        if not with_ece:
            arrays = (*arrays[:2], None)
        points.append(batched_metrics(*arrays))
        samples.append(batched_metrics(*arrays, index=index))
    point = {k: float(np.mean([p[k][0] for p in points])) for k in points[0]}
    boot = {k: np.mean([s[k] for s in samples], axis=0) for k in samples[0]}
    return point, boot


def bootstrap_metrics(frames: pd.DataFrame | Sequence[pd.DataFrame], n_boot: int = N_BOOT, seed: int = 0,
                      level: float = LEVEL) -> pd.DataFrame:
    """One row per metric: ``metric, value, low, high`` (patient bootstrap, percentile interval)."""
    point, boot = metric_samples(frames, n_boot=n_boot, seed=seed)
    rows = [(name, point[name], *percentile_interval(boot[name], level))
            for name in metric_names() if name in point]
    return pd.DataFrame(rows, columns=["metric", "value", "low", "high"])
