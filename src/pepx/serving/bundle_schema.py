"""`config.json` of a bundle as a pydantic model, checked whole before anything in the bundle is used.

A bundle is data from anywhere, so every field that changes what the bundle computes or which file it reads
is typed and ranged here; values of the wrong type are refused, not coerced (strict mode: `true` is not an
image size, `"1.7"` is not a temperature). Unknown keys follow one rule, so that later sections are a
deliberate choice:

- **Sections that change the numbers** (`architecture`, `input`, `preprocess.settings`) refuse keys they do
  not know: a bundle asking for a preprocessing step this pepx cannot do (say `preprocess.settings.denoise`
  before pepx has it) must not be run without it. Adding such a setting means adding it here (or, for
  `preprocess.settings`, to `pepx.data.transforms.Preprocess`, which checks it).
- **Optional sections** are declared below with their type: `operating_points`, `exports`, and `gate` (the
  input gate's thresholds; its owner validates its content). A newer section that older pepx may ignore is
  added the same way, as optional.
- **Top-level keys nobody declared** (a newer pepx's informational additions) are kept in `Bundle.config` and
  named in a warning; a change older pepx must not ignore bumps `format_version`, which older pepx refuse.

File names (`weights.file`, `exports.*.file`) are plain names inside the bundle folder: no `/`, no `..`, not
absolute; `load_bundle` also refuses a file that is a symbolic link or not a regular file.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pepx.checks import MAX_IMAGE_SIZE
from pepx.data.transforms import Preprocess
from pepx.errors import BundleError
from pepx.evaluation.calibration import T_BOUNDS

log = logging.getLogger("pepx.serving")
FORMAT, FORMAT_VERSION = "pepx-bundle", 1


def _plain_name(name: str) -> str:
    if not name or len(name) > 255 or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise ValueError(f"{name!r} is not a plain file name inside the bundle (no folders, no '..')")
    return name


FileName = Annotated[str, AfterValidator(_plain_name)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Number = Annotated[float, Field(allow_inf_nan=False)]


class _Settings(BaseModel):
    """A section that changes what the bundle computes: unknown keys are refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class _Info(BaseModel):
    """A section with settings and information (fit statistics, prose): unknown keys are kept."""

    model_config = ConfigDict(strict=True, extra="allow")


class Architecture(_Settings):
    name: str = Field(min_length=1)
    kwargs: dict[str, Any] = {}  # checked against the model's factory by `Bundle.build_model`


class Input(_Settings):
    image_size: int = Field(ge=8, le=MAX_IMAGE_SIZE)
    channels: int = Field(default=1, ge=1, le=4)
    layout: Literal["NCHW float32"] = "NCHW float32"


class PreprocessSection(_Info):
    settings: dict[str, Any]
    steps: list[str] = []

    @field_validator("settings")
    @classmethod
    def _known_and_in_range(cls, value: dict[str, Any]) -> dict[str, Any]:
        Preprocess.from_any(value)  # unknown settings and values out of range: ValueError
        return value


class Calibration(_Info):
    method: Literal["temperature"] = "temperature"
    temperature: Number = Field(ge=T_BOUNDS[0], le=T_BOUNDS[1])


class OperatingPoint(_Info):
    threshold: Number = Field(ge=0.0, le=1.0)


class Weights(_Info):
    file: FileName = "model.safetensors"
    sha256: Sha256
    bytes: int = Field(ge=0)


class ExportFile(_Info):
    file: FileName
    sha256: Sha256


class BundleConfig(_Info):
    """The whole config.json (see docs/use.md, "The bundle")."""

    format: Literal["pepx-bundle"]
    format_version: int = Field(ge=1, le=FORMAT_VERSION)
    id: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=100)
    architecture: Architecture
    classes: list[str] = Field(min_length=2, max_length=1000)
    class_display: list[str] | None = None
    input: Input
    preprocess: PreprocessSection
    calibration: Calibration
    weights: Weights
    operating_points: dict[str, OperatingPoint] = {}
    exports: dict[str, ExportFile] = {}
    #: The input gate's thresholds (`pepx serve`): optional; validated by the code that applies them.
    gate: dict[str, Any] | None = None
    # information only (written by `pepx export`): any content
    versions: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    test_metrics: dict[str, Any] | None = None
    checks: dict[str, Any] | None = None
    #: class -> the sentence shown next to a result of that class (`Bundle.caveat`); history: earlier
    #: versions (card only)
    caveats: dict[str, str] = {}
    history: list[dict[str, str]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BundleConfig:
        if len(set(self.classes)) != len(self.classes) or not all(self.classes):
            raise ValueError(f"classes must be distinct, non-empty names, got {self.classes}")
        if self.class_display is not None and len(self.class_display) != len(self.classes):
            raise ValueError(f"class_display has {len(self.class_display)} names for {len(self.classes)} "
                             "classes")
        unknown = sorted(set(self.operating_points) - set(self.classes))
        if unknown:
            raise ValueError(f"operating_points for unknown class(es) {unknown}; classes: {self.classes}")
        unknown = sorted(set(self.caveats) - set(self.classes))
        if unknown:
            raise ValueError(f"caveats for unknown class(es) {unknown}; classes: {self.classes}")
        return self


def validate_config(config: object, where: str) -> BundleConfig:
    """`config` (parsed config.json) checked whole; `BundleError` naming `where`, the entry and the reason."""
    if isinstance(config, dict):
        version = config.get("format_version")
        if config.get("format") == FORMAT and isinstance(version, int) and version > FORMAT_VERSION:
            raise BundleError(f"{where}: bundle format {version} is newer than this pepx reads "
                              f"({FORMAT_VERSION}): upgrade pepx")
    elif not isinstance(config, dict):
        raise BundleError(f"{where}: config.json is not a JSON object (got {type(config).__name__})")
    try:
        model = BundleConfig.model_validate(config)
    except ValidationError as err:
        raise BundleError(f"{where}: config.json: {_describe(err)}") from None
    extra = sorted(model.model_extra or {})
    if extra:
        log.warning("%s: config.json sections %s are not used by this pepx (a newer pepx's additions?): "
                    "ignored", where, ", ".join(extra))
    return model


def _describe(err: ValidationError, most: int = 3) -> str:
    """The first `most` problems, one clause each: `input.image_size: ... (got 100000000)`."""
    parts = []
    for e in err.errors()[:most]:
        where = ".".join(str(k) for k in e["loc"]) or "config"
        if e["type"] == "missing":
            parts.append(f"lacks {where}")
            continue
        message = str(e["msg"]).removeprefix("Value error, ")
        got = repr(e.get("input"))
        parts.append(f"{where}: {message}" + (f" (got {got[:60]})" if e["type"] != "value_error" else ""))
    more = len(err.errors()) - most
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


__all__ = ["FORMAT", "FORMAT_VERSION", "BundleConfig", "validate_config"]
