"""The probes that need images only: can a small network tell the source (``source``), or the differently
processed source from the other adult films (``processing``), from the film alone?

Both train pepx's ResNet18 at a small width and size on pepx's cached films under a given `Preprocess`
(``equalize="none"`` or ``"hist"``), patient-grouped K-fold, and report out-of-fold balanced accuracy and
AUROC with patient-bootstrap intervals, beside chance and beside the same probe fed only the disease label.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pepx.data import DataError, Preprocess
from pepx.probes.images import films, inputs
from pepx.probes.learners import network_oof
from pepx.probes.results import ProbeResult, probed_rows, score
from pepx.probes.settings import ProbeSettings

log = logging.getLogger("pepx.probes")
OTHER = "other"


def source_column(frame: pd.DataFrame, what: str) -> pd.Series:
    """The ``source`` column as strings (NA kept); `DataError` when it is missing, empty or holds one
    value."""
    if "source" not in frame.columns or frame["source"].isna().all():
        raise DataError(f"{what}: the data has no source column (the probe predicts each film's source)")
    values = frame["source"].astype("string")
    if values.dropna().nunique() < 2:
        raise DataError(f"{what}: the data holds one source ({values.dropna().iloc[0]}); there is no other "
                        "source to tell it from")
    return values


def _network_probe(probe: str, rows: pd.DataFrame, classes: list[str], settings: ProbeSettings,
                   notes: list[str]) -> list[ProbeResult]:
    stack = films(rows, settings.size, Preprocess())
    y = rows["probe_target"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    groups = rows["patient_id"].astype(str).to_numpy()
    out = []
    for mode in settings.equalize:
        log.info("%s probe, equalize=%s: %d films, %d classes, %d folds", probe, mode, len(rows),
                 len(classes), settings.folds)
        prob = network_oof(inputs(stack, Preprocess(equalize=mode)), y, groups, len(classes), settings,
                           what=f"{probe} probe (equalize={mode})")
        out.append(score(probe, f"equalize={mode}", rows, classes, prob, settings, notes))
    return out


def source_probe(frame: pd.DataFrame, settings: ProbeSettings) -> list[ProbeResult]:
    """How well the film alone tells its source: one result per ``settings.equalize`` mode."""
    what = "source probe"
    rows, notes = probed_rows(frame, source_column(frame, what), what, settings.folds)
    classes = sorted(rows["probe_target"].astype(str).unique())
    return _network_probe("source", rows, classes, settings, notes)


def processing_probe(frame: pd.DataFrame, settings: ProbeSettings) -> list[ProbeResult]:
    """How well the film alone tells ``settings.processed_source`` from the other sources' adult films."""
    processed = settings.processed_source
    what = f"processing probe ({processed} against other adult films)"
    sources = source_column(frame, what)
    if not sources.eq(processed).any():
        raise DataError(f"{what}: no film of source {processed!r} (the data has "
                        f"{', '.join(sorted(sources.dropna().unique()))}); set processed_source=NAME")
    notes = []
    if "age_group" in frame.columns and frame["age_group"].notna().any():
        adult = frame["age_group"].astype("string").eq("adult").fillna(False).to_numpy()
        frame, sources = frame[adult], sources[adult]
    else:
        notes.append("the data has no age_group: every film is used")
    target = pd.Series(np.where(sources.eq(processed).fillna(False), processed, OTHER), index=frame.index)
    target[sources.isna().to_numpy()] = pd.NA
    rows, dropped = probed_rows(frame, target, what, settings.folds)
    return _network_probe("processing", rows, [OTHER, processed], settings, notes + dropped)
