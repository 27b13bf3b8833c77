"""The gate's part of a bundle: the optional `gate` section of config.json and the file it names.

    "gate": {
      "version": 1,
      "file": "gate.safetensors", "sha256": "...", "bytes": 123456,     the fitted arrays (see GateModel)
      "layers": ["layer1", "layer2", "layer3", "layer4"],             stages whose pooled maps it reads
      "thresholds": {"reject": 0.67, "unfamiliar": 1.57},
      ...                                                              what it was fitted on, its numbers
    }

`read_gate_section(config, where)` is the one place that reads it: None when the bundle has no `gate`
section (an older bundle: it loads, and the gate is off), else a `GateSection`; a malformed section or a
threshold that is NaN, infinite or negative (or a reject threshold above 1) is a `BundleError` naming the
bundle and the entry. Nothing else is added to config.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pepx.errors import BundleError

GATE_KEY, GATE_FILE, GATE_VERSION = "gate", "gate.safetensors", 1


@dataclass(frozen=True)
class GateSection:
    """The checked `gate` section: the arrays' file and checksum, the stages read, the two thresholds
    (`reject`: on the gate score, a probability; `unfamiliar`: on the feature distance) and the rest as
    written (`info`)."""

    file: str
    sha256: str
    layers: tuple[str, ...]
    reject: float
    unfamiliar: float
    info: dict[str, Any]

    @property
    def thresholds(self) -> dict[str, float]:
        return {"reject": self.reject, "unfamiliar": self.unfamiliar}


def read_gate_section(config: dict[str, Any], where: object) -> GateSection | None:
    """config.json's `gate` section, checked (module docstring); `where` names the bundle in errors."""
    raw = config.get(GATE_KEY)
    if raw is None:
        return None
    prefix = f"{where}: config.json gate"
    if not isinstance(raw, dict):
        raise BundleError(f"{prefix}: expected an object, got {type(raw).__name__}")
    version = raw.get("version", 0)
    if not isinstance(version, int) or version > GATE_VERSION:
        raise BundleError(f"{prefix}: version {version!r} is not one this pepx reads (<= {GATE_VERSION}): "
                          "upgrade pepx")
    try:
        thresholds = raw["thresholds"]
        values = {name: thresholds[name] for name in ("reject", "unfamiliar")}
        layers = tuple(str(n) for n in raw["layers"])
        file, sha = str(raw["file"]), str(raw["sha256"])
    except (KeyError, TypeError) as err:
        raise BundleError(f"{prefix}: lacks or mistypes {err}") from None
    for name, value in values.items():
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number) or number < 0:
            raise BundleError(f"{prefix}.thresholds.{name} = {value!r}: must be a finite number >= 0")
    if values["reject"] > 1:
        raise BundleError(f"{prefix}.thresholds.reject = {values['reject']!r}: a probability, must be <= 1")
    if not layers or "/" in file or file.startswith("."):
        raise BundleError(f"{prefix}: needs at least one layer and a plain file name (got {file!r})")
    return GateSection(file, sha, layers, float(values["reject"]), float(values["unfamiliar"]), dict(raw))


__all__ = ["GATE_FILE", "GATE_KEY", "GATE_VERSION", "GateSection", "read_gate_section"]
