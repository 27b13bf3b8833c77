"""`TrainConfig`: every setting of one training run, loadable from YAML/TOML and `key=value` overrides.

Types and ranges are declared once, as pydantic fields; `pepx.settings_errors` turns pydantic's errors into
one `ConfigError` line naming the key (``epochs must be >= 1, got 0``; ``optimizer='rmsprop': choose one of
adam, adamw, sgd``; ``unknown config key 'epoch' (did you mean 'epochs'?)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from pepx.checks import MAX_IMAGE_SIZE
from pepx.data.transforms import Preprocess
from pepx.errors import ConfigError
from pepx.fileio import file_problem, write_text
from pepx.settings_errors import Settings, check_setting_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: YAML configs only
    tomllib = None  # type: ignore[assignment]

#: YAML booleans of `balanced_sampling` from before it named a scheme.
_LEGACY_BALANCE = {"True": "class", "true": "class", "False": "none", "false": "none"}
SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range


def _no_bool(value: Any) -> Any:
    """YAML's ``true`` is not a number (pydantic would read it as 1)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


def _text(value: Any) -> Any:
    """A single YAML value as text (``precision=32`` is the string "32"); mappings and lists are refused."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


# Numbers as YAML/TOML give them: an integral float is an integer, "1e-3" (text in YAML 1.1) a float.
Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
Text = Annotated[str, BeforeValidator(_text)]
#: Largest sane values: a typo such as `epochs=1000000000` or `num_workers=100000` would otherwise train
#: forever, fork the machine to death or allocate tens of GB before failing.
MAX_IMAGES, MAX_BATCH = 10_000_000, 65_536


class TrainConfig(Settings):
    """Every setting of one training run: one model x one loss on one split (docs/training.md has the table).

    Each field's type and range is declared once, below, and checked on construction (pydantic); a bad value
    or an unknown key raises `pepx.errors.ConfigError`, one line naming the key, the value and what it may be.
    What needs torch (the model and its arguments, the loss, the hardware, the cache folder) is checked by
    `pepx.training.preflight.check_config` before training.

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

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    NAMING = "key"  # errors name config keys (``epochs must be >= 1, got 0``)

    # what to train
    model: Text = "pepx_resnet"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    loss: Text = "ce"
    loss_kwargs: dict[str, Any] = Field(default_factory=dict)
    # data: the defaults fit the embedded synthetic set (100 images per class at 128 px), so a bare
    # `pepx train` runs on a fresh machine; the paper's protocol is n_train=1000 n_test=100 image_size=224.
    data: Text = "synthetic"
    split: Text | None = None
    n_train: Int = Field(70, ge=0, le=MAX_IMAGES)
    n_test: Int = Field(30, ge=0, le=MAX_IMAGES)
    n_val: Int = Field(0, ge=0, le=MAX_IMAGES)
    split_seed: Int = Field(0, ge=0, le=SEED_MAX)
    image_size: Int = Field(128, ge=1, le=MAX_IMAGE_SIZE)
    in_chans: Int = 1
    preprocess: dict[str, Any] = Field(default_factory=dict)
    augment: StrictBool = False
    augment_acquisition: StrictBool = False
    cache_dir: Text | None = None
    eval_splits: list[str] = Field(default_factory=lambda: ["val", "test"])
    # optimisation
    epochs: Int = Field(10, ge=1, le=100_000)
    batch_size: Int = Field(32, ge=1, le=MAX_BATCH)
    eval_batch_size: Int | None = Field(None, ge=1, le=MAX_BATCH)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: Float = Field(1e-3, gt=0, le=10.0)
    weight_decay: Float = Field(0.0, ge=0, le=10.0)
    momentum: Float = Field(0.9, ge=0, lt=1)  # SGD diverges at 1 and above
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    lr_step_size: Int = Field(10, ge=1, le=100_000)
    lr_gamma: Float = Field(0.1, gt=0, le=10.0)
    balanced_sampling: Literal["none", "class", "source-class"] = "none"
    domain_adversary: Literal["none", "source", "source-given-class"] = "none"
    domain_adversary_weight: Float = Field(0.5, ge=0, le=100.0)
    domain_column: Text = "source"
    # exponential moving average of the weights (and BN statistics), updated every step; evaluation and the
    # saved model use the average. None = off; e.g. 0.99 ~ an average over the last ~100 steps.
    ema_decay: Float | None = Field(None, gt=0, lt=1)
    seed: Int = Field(0, ge=0, le=SEED_MAX)
    deterministic: StrictBool = True
    # hardware
    num_workers: Int = Field(0, ge=0, le=256)
    num_threads: Int | None = Field(None, ge=1, le=1024)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | str = 1
    num_nodes: Int = Field(1, ge=1, le=4096)
    strategy: Text = "auto"
    precision: Annotated[Literal["auto", "32", "16-mixed", "bf16-mixed"], BeforeValidator(_text)] = "auto"
    # NHWC tensors: 25-70 % faster training on CPU for all three networks (benchmarks/models.py)
    channels_last: StrictBool = True
    progress: StrictBool | None = None

    # ------------------------------------------------------------------ checks pydantic cannot declare
    @field_validator("in_chans")
    @classmethod
    def _grey(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"in_chans={value}: pepx's datasets yield 1-channel (grey) images; "
                             "use in_chans=1 (RGB ImageNet weights load by summing first-conv kernels)")
        return value

    @field_validator("preprocess")
    @classmethod
    def _preprocess(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Preprocess.from_any(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"preprocess: {err}") from None
        return value

    @field_validator("eval_splits", mode="before")
    @classmethod
    def _eval_splits(cls, value: Any) -> list[str]:
        if value is None:
            raise ValueError("eval_splits: may not be empty")
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
        bad = [str(s) for s in items if str(s) not in ("val", "test")]
        if bad:
            raise ValueError(f"eval_splits: unknown {bad}; use val and/or test")
        return [str(s) for s in items]

    @field_validator("balanced_sampling", mode="before")
    @classmethod
    def _legacy_balance(cls, value: Any) -> Any:
        return _LEGACY_BALANCE.get(str(value), value)

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> int | str:
        """An integer >= 1, ``auto``, or a list of device indices such as ``0,1``."""
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"devices must be >= 1 (or auto, or indices like 0,1), got {value}")
            return value
        if isinstance(value, (dict, list)):
            raise ValueError(f"devices={value!r}: expected a single value")
        text = str(value).strip()
        if text != "auto" and not re.fullmatch(r"\d+(\s*,\s*\d+)*\s*,?", text):
            raise ValueError(f"devices={value!r}: use an integer >= 1, auto, or indices like 0,1")
        return str(value)

    @model_validator(mode="after")
    def _some_training_images(self) -> TrainConfig:
        if self.split is None and self.n_train < 1:
            raise ValueError("n_train=0: no training images (images per class: >= 1 unless `split` is set)")
        return self

    def preprocess_settings(self) -> Preprocess:
        """`preprocess` as a `pepx.data.Preprocess` (checked on construction)."""
        return Preprocess.from_any(self.preprocess)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping, checking every key and value (`ConfigError` naming the first bad one)."""
        for key in values:
            if not isinstance(key, str):
                check_setting_name(cls, str(key))
        return cls(**values)

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
            check_setting_name(TrainConfig, top)
            if dot:
                if values[top] is not None and not isinstance(values[top], dict):
                    raise ConfigError(f"override {item!r}: {top} is not a mapping, so {key} is meaningless")
                values[top] = {**(values[top] or {}), sub: parsed}
            else:
                values[top] = parsed
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def save(self, path: str | Path) -> None:
        """Write as YAML (the run folder's `config.yaml`)."""
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------- helpers
def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err)


__all__ = ["TrainConfig"]
