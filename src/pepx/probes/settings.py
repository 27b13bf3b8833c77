"""The probes `pepx audit` knows and the settings they share (`ProbeSettings`, `key=value` overrides)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import yaml

from pepx.checks import check_kwargs
from pepx.errors import ConfigError

#: Probes that need only images (a data source, or the data of a run).
DATA_PROBES: tuple[str, ...] = ("source", "processing")
#: Probes that need a trained disease model (a run folder or a `pepx reproduce --cv` folder).
MODEL_PROBES: tuple[str, ...] = ("features", "blanked", "invariance")
PROBES: tuple[str, ...] = (*DATA_PROBES, *MODEL_PROBES)


@dataclass(frozen=True)
class ProbeSettings:
    """Settings of the probes (every one small: tiny networks, small images, one torch thread).

    Args:
        size: image side (pixels) of the image-only probe networks (source, processing).
        width: channel multiplier of their ResNet18.
        epochs: their training epochs per fold.
        min_steps: their least number of optimiser steps per fold (a small data set trains more epochs).
        batch_size: their batch size.
        lr: their AdamW learning rate.
        folds: patient-grouped folds (scikit-learn's StratifiedGroupKFold) of every probe that is trained
            (image-only networks and the linear probe on a disease model's features).
        equalize: `Preprocess.equalize` modes the image-only probes run under (one result each).
        processed_source: the source whose films were processed differently (cxr-real: ``rsna``, histogram-
            equalised by its collection); the processing probe tells it from the other adult films.
        jpeg_quality: JPEG quality of the invariance probe's re-compression.
        resize: the invariance probe's down/up resize: the film's side is scaled by this, then back.
        lung_box: (top, bottom, left, right) of the rectangle blanked by the lungs-blanked probe, as fractions
            of the model's square input side.
        n_boot: patient-bootstrap resamples of every interval.
        seed: seed of folds, networks and bootstrap.
        threads: torch threads while the audit runs (restored after).
        batch: images per forward pass of a disease model.
    """

    size: int = 64
    width: float = 0.25
    epochs: int = 5
    min_steps: int = 150
    batch_size: int = 64
    lr: float = 3e-3
    folds: int = 3
    equalize: tuple[str, ...] = ("none", "hist")
    processed_source: str = "rsna"
    jpeg_quality: int = 50
    resize: float = 0.5
    lung_box: tuple[float, float, float, float] = (0.10, 0.85, 0.10, 0.90)
    n_boot: int = 1000
    seed: int = 0
    threads: int = 1
    batch: int = 64

    def __post_init__(self) -> None:
        for name in ("size", "epochs", "min_steps", "batch_size", "n_boot", "threads", "batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"audit setting {name}={getattr(self, name)}: must be >= 1")
        if self.batch_size < 2:
            raise ConfigError(f"audit setting batch_size={self.batch_size}: BatchNorm needs >= 2")
        if self.size < 64:
            raise ConfigError(f"audit setting size={self.size}: the probe networks need >= 64 px")
        if self.folds < 2:
            raise ConfigError(f"audit setting folds={self.folds}: cross-validation needs >= 2 folds")
        if not 0 < self.resize < 1:
            raise ConfigError(f"audit setting resize={self.resize}: must lie in (0, 1)")
        if not 1 <= self.jpeg_quality <= 95:
            raise ConfigError(f"audit setting jpeg_quality={self.jpeg_quality}: must lie in 1..95")
        top, bottom, left, right = self.lung_box
        if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
            raise ConfigError(f"audit setting lung_box={list(self.lung_box)}: need 0 <= top < bottom <= 1 "
                              "and 0 <= left < right <= 1")
        bad = [m for m in self.equalize if m not in ("none", "hist")]
        if bad or not self.equalize:
            raise ConfigError(f"audit setting equalize={list(self.equalize)}: choose among none, hist")

    def with_overrides(self, overrides: Iterable[str]) -> ProbeSettings:
        """A copy with ``key=value`` strings applied (values read as YAML: ``equalize=[none,hist]``);
        `ConfigError` names a malformed item, an unknown key or a value of the wrong type."""
        values: dict[str, Any] = {}
        for item in overrides:
            key, eq, raw = item.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"audit setting {item!r}: write key=value, e.g. epochs=4")
            try:
                value = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                raise ConfigError(f"audit setting {item!r}: cannot read the value") from None
            if key.strip() == "equalize" and isinstance(value, str):
                value = [value]
            values[key.strip()] = value
        check_kwargs(ProbeSettings, values, "audit", owner="pepx audit")
        tuples = {f.name for f in fields(self) if isinstance(getattr(self, f.name), tuple)}
        return replace(self, **{k: tuple(v) if k in tuples else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def choose_probes(asked: Sequence[str] | None, has_model: bool) -> list[str]:
    """The probes to run: ``asked`` (checked: known names, model probes only with a model), else every probe
    the target allows, in `PROBES` order."""
    if asked is None:
        return [p for p in PROBES if has_model or p in DATA_PROBES]
    unknown = [p for p in asked if p not in PROBES]
    if unknown:
        raise ConfigError(f"--probes {' '.join(unknown)}: unknown probe; choose among {', '.join(PROBES)}")
    needs_model = [p for p in asked if p in MODEL_PROBES]
    if needs_model and not has_model:
        raise ConfigError(f"--probes {' '.join(needs_model)}: needs a trained disease model; give a run "
                          "folder or a `pepx reproduce --cv` folder instead of a data source")
    return [p for p in PROBES if p in asked]
