"""`TrainConfig`: every setting of one training run, loadable from YAML/TOML and `key=value` overrides."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pepx.checks import MAX_IMAGE_SIZE
from pepx.data.transforms import Preprocess
from pepx.errors import ConfigError
from pepx.fileio import file_problem, write_text

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: YAML configs only
    tomllib = None  # type: ignore[assignment]

_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "adamw", "sgd"),
    "scheduler": ("cosine", "step", "none"),
    "accelerator": ("auto", "cpu", "gpu", "cuda", "mps"),
    "precision": ("auto", "32", "16-mixed", "bf16-mixed"),
    "balanced_sampling": ("none", "class", "source-class"),
    "domain_adversary": ("none", "source", "source-given-class"),
}
#: Largest sane value of each numeric setting (a typo such as `epochs=1000000000` or `num_workers=100000`
#: would otherwise train forever, fork the machine to death or allocate tens of GB before failing).
_MAXIMA: dict[str, float] = {
    "epochs": 100_000, "batch_size": 65_536, "eval_batch_size": 65_536, "image_size": MAX_IMAGE_SIZE,
    "num_workers": 256, "num_threads": 1024, "num_nodes": 4096, "lr_step_size": 100_000,
    "n_train": 10_000_000, "n_test": 10_000_000, "n_val": 10_000_000,
    "seed": 2**32 - 1, "split_seed": 2**32 - 1,  # numpy's and Lightning's seed range
    "lr": 10.0, "weight_decay": 10.0, "lr_gamma": 10.0, "domain_adversary_weight": 100.0,
}
#: YAML booleans of `balanced_sampling` from before it named a scheme.
_LEGACY_BALANCE = {"True": "class", "true": "class", "False": "none", "false": "none"}


@dataclass
class TrainConfig:
    """Every setting of one training run: one model x one loss on one split (docs/training.md has the table).

    Checked on construction (`validate`); a bad value raises `pepx.errors.ConfigError` naming the field.

    Args:
        model: a name of `pepx.models.list_models()` (``pepx_resnet``, ``resnet18``, ``covidnet``).
        model_kwargs: the model factory's further arguments, e.g. ``{"width": 0.5}``.
        loss: ``"ce"`` or ``"focal"``; loss_kwargs: the loss's arguments, e.g. ``{"gamma": 1, "alpha": 1}``.
        data: a `pepx.data.load_source` spec (``synthetic``, ``csv:PATH``, ``covidx:DIR``, ...).
        split: a split CSV (``pepx data split``); None draws one here with `balanced_split`.
        n_train, n_test, n_val, split_seed: images per class of the split drawn here, and its seed.
        image_size: input side in pixels; in_chans: input channels (1: pepx's images are grey).
        preprocess: `pepx.data.Preprocess` fields, e.g. ``{"equalize": "hist"}`` (histogram equalisation of
            every film, in training and in the bundle); empty = the defaults.
        augment: `CXRDataset` augmentation; cache_dir: the decoded-image cache (default ``$PEPX_CACHE``).
        augment_acquisition: also draw acquisition changes (gamma, blur, noise, JPEG, resampling, crop,
            borders, burnt-in text: `pepx.data.acquisition`) for every training view.
        eval_splits: splits evaluated after every epoch (``val`` and/or ``test``).
        epochs, batch_size, eval_batch_size: epochs; per-process batch sizes (eval default: 2 x batch).
        optimizer, lr, weight_decay, momentum: ``adam`` / ``adamw`` / ``sgd`` and their settings.
        scheduler, lr_step_size, lr_gamma: per-epoch ``cosine``, ``step`` (every ``lr_step_size`` epochs,
            times ``lr_gamma``) or ``none``.
        balanced_sampling: ``none`` (shuffle), ``class`` (probability 1 / class count) or ``source-class``
            (classes balanced, and within a class the sources by the square root of their counts:
            `pepx.training.sampler`); ``true`` / ``false`` mean ``class`` / ``none``.
        domain_adversary: ``none``, ``source`` or ``source-given-class``: a gradient-reversal head predicts
            each training image's ``domain_column`` (its source) from the penultimate features (Ganin &
            Lempitsky 2015), so the features learn to carry less of it; ``source-given-class`` asks only
            for what the class does not explain (one head per class). domain_adversary_weight: the reversed
            gradient's final scale (ramped up from 0 as in Ganin et al., who end at 1.0; 0.5 here, not tuned:
            the focal loss's gradients are smaller than a cross-entropy's).
        domain_column: the split column naming each image's domain, for ``balanced_sampling=source-class`` and
            ``domain_adversary``.
        ema_decay: exponential moving average of the weights (None: off; e.g. 0.99); evaluation and the saved
            model use the average.
        seed, deterministic: the run's seed; deterministic algorithms (warn-only) and no cuDNN autotuning.
        num_workers, num_threads: DataLoader workers; torch threads (None: torch's default).
        accelerator, devices, num_nodes, strategy, precision: Lightning's hardware settings.
        channels_last: channels-last memory format (default on: faster on CPU).
        progress: progress bar (None: when stderr is a terminal).
    """

    # what to train
    model: str = "pepx_resnet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "ce"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    # data: the defaults fit the embedded synthetic set (100 images per class at 128 px), so a bare
    # `pepx train` runs on a fresh machine; the paper's protocol is n_train=1000 n_test=100 image_size=224.
    data: str = "synthetic"
    split: str | None = None
    n_train: int = 70
    n_test: int = 30
    n_val: int = 0
    split_seed: int = 0
    image_size: int = 128
    in_chans: int = 1
    preprocess: dict[str, Any] = field(default_factory=dict)
    augment: bool = False
    augment_acquisition: bool = False
    cache_dir: str | None = None
    eval_splits: list[str] = field(default_factory=lambda: ["val", "test"])
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int | None = None
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"
    lr_step_size: int = 10
    lr_gamma: float = 0.1
    balanced_sampling: str = "none"
    domain_adversary: str = "none"
    domain_adversary_weight: float = 0.5
    domain_column: str = "source"
    # exponential moving average of the weights (and BN statistics), updated every step; evaluation and the
    # saved model use the average. None = off; e.g. 0.99 ~ an average over the last ~100 steps.
    ema_decay: float | None = None
    seed: int = 0
    deterministic: bool = True
    # hardware
    num_workers: int = 0
    num_threads: int | None = None
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"
    # NHWC tensors: 25-70 % faster training on CPU for all three networks (benchmarks/models.py)
    channels_last: bool = True
    progress: bool | None = None

    def __post_init__(self) -> None:
        self.balanced_sampling = _LEGACY_BALANCE.get(str(self.balanced_sampling), self.balanced_sampling)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise `ConfigError` on an out-of-range or unknown setting (what can be checked without torch; the
        model, loss and hardware are checked by `pepx.training.checks.check_config` before training)."""
        for name, choices in _CHOICES.items():
            if str(getattr(self, name)) not in choices:
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(choices)}")
        for name in ("epochs", "batch_size", "image_size", "num_nodes", "lr_step_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_batch_size", "num_threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (or null), got {getattr(self, name)}")
        for name in ("n_train", "n_test", "n_val", "num_workers", "split_seed", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.split is None and self.n_train < 1:
            raise ConfigError("n_train=0: no training images (images per class: >= 1 unless `split` is set)")
        if self.in_chans != 1:
            raise ConfigError(f"in_chans={self.in_chans}: pepx's datasets yield 1-channel (grey) images; "
                              "use in_chans=1 (RGB ImageNet weights load by summing first-conv kernels)")
        for name in ("lr", "lr_gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "momentum", "domain_adversary_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, top in _MAXIMA.items():
            value = getattr(self, name)
            if value is not None and not value <= top:  # also catches inf and nan
                raise ConfigError(f"{name} must be <= {top}, got {value}")
        if not self.momentum < 1:
            raise ConfigError(f"momentum must be < 1 (SGD diverges at 1 and above), got {self.momentum}")
        _check_devices(self.devices)
        if self.preprocess:
            self.preprocess_settings()
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1) or empty, got {self.ema_decay}")
        bad = [s for s in self.eval_splits if s not in ("val", "test")]
        if bad:
            raise ConfigError(f"eval_splits: unknown {bad}; use val and/or test")

    def preprocess_settings(self) -> Preprocess:
        """`preprocess` as a `pepx.data.Preprocess` (`ConfigError` naming the bad setting)."""
        try:
            return Preprocess.from_any(self.preprocess)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"preprocess: {err}") from None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping, checking every key and coercing every value to its field's type."""
        hints = _hints()
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            _check_key(key)
            kwargs[key] = _coerce(key, value, hints[key])
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Load a `.yaml`/`.yml` or `.toml` file: flat fields, `model_kwargs` etc. as sub-tables.

        Raises `ConfigError` naming the file for a missing or unreadable file, malformed YAML/TOML (with the
        line) or a bad setting."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".toml", ".yaml", ".yml"):
            raise ConfigError(f"{path}: config must end in .yaml, .yml or .toml")
        problem = file_problem(path)
        if problem is not None and problem != "file not found":  # a FIFO would block the read for ever
            raise ConfigError(f"{path}: cannot read the config ({problem})")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the config ({_reason(err)})") from None
        if suffix == ".toml" and tomllib is None:
            raise ConfigError(f"{path}: TOML configs need Python >= 3.11 (tomllib); use YAML")
        try:
            values = tomllib.loads(text) if suffix == ".toml" else (yaml.safe_load(text) or {})
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or err
            raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: malformed TOML: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def with_overrides(self, overrides: Iterable[str]) -> TrainConfig:
        """A copy with `key=value` overrides; `model_kwargs.width=0.5` sets one entry of a dict field."""
        values = self.to_dict()
        hints = _hints()
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r}: expected key=value")
            try:
                parsed = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError as err:
                problem = getattr(err, "problem", None) or err
                raise ConfigError(f"override {item!r}: not a YAML value ({problem})") from None
            top, dot, sub = key.partition(".")
            _check_key(top)
            if dot:
                if values[top] is not None and not isinstance(values[top], dict):
                    raise ConfigError(f"override {item!r}: {top} is not a mapping, so {key} is meaningless")
                values[top] = {**(values[top] or {}), sub: parsed}
            else:
                values[top] = _coerce(top, parsed, hints[top])
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        """Write as YAML (the run folder's `config.yaml`)."""
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_file(path)


# ---------------------------------------------------------------------- helpers
def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err)


def _check_devices(devices: int | str) -> None:
    """`devices`: an integer >= 1, ``auto``, or a list of device indices such as ``0,1``."""
    if isinstance(devices, int):
        if devices < 1:
            raise ConfigError(f"devices must be >= 1 (or auto, or indices like 0,1), got {devices}")
        return
    text = str(devices).strip()
    if text != "auto" and not re.fullmatch(r"\d+(\s*,\s*\d+)*\s*,?", text):
        raise ConfigError(f"devices={devices!r}: use an integer >= 1, auto, or indices like 0,1")


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _check_key(key: str) -> None:
    names = [f.name for f in fields(TrainConfig)]
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}; known keys: {', '.join(names)}")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Coerce a parsed YAML/TOML value to the field's declared type, or raise a clear `ConfigError`."""
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if is_union else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key}: may not be empty")
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return _coerce_one(value, option)
        except (TypeError, ValueError) as err:
            errors.append(str(err))
    raise ConfigError(f"{key}={value!r}: {'; '.join(errors)}")


def _coerce_one(value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind) or kind
    if origin is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("expected true/false")
    if origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError("expected an integer")
    if origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)  # YAML reads "1e-3" as a string
        raise TypeError("expected a number")
    if origin is str:
        if isinstance(value, (dict, list)):
            raise TypeError("expected a single value")
        return str(value)
    if origin is list:
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
        return [str(v) for v in items]
    if origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError("expected a mapping")
    raise TypeError(f"unsupported type {kind}")


__all__ = ["TrainConfig"]
