"""How `pepx export RUN` makes a bundle: `ExportSettings`, a pydantic model declaring each setting's type,
range and default once (as `pepx.serving.settings.ServeSettings` does for `pepx serve`); a bad value is one
`ConfigError` line naming the option, an unknown name one line with the closest known one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)

from pepx import CLASSES
from pepx.evaluation.bootstrap import MAX_BOOT, N_BOOT
from pepx.settings_errors import Settings

#: Operating points made by default: class -> target sensitivity on the validation split.
DEFAULT_TARGETS: dict[str, float] = {"COVID-19": 0.95}

Text = Annotated[str, StringConstraints(strict=True, min_length=1)]
Sensitivity = Annotated[float, Field(strict=True, gt=0.0, le=1.0)]


class ExportSettings(Settings):
    """What `pepx.release.build.bundle_from_run` makes of a run (every field is a `pepx export` option).

    Args:
        bundle_id, version: the bundle's name and version (default id: `<model>-<loss>-<run folder name>`).
        calibrate: a data SOURCE to fit the temperature and operating points on instead of the run's `val`
            rows (it must share no patient with the run's training rows).
        targets: class -> validation sensitivity of its operating point (None: `DEFAULT_TARGETS`; `{}`: none).
        half: store the large tensors as fp16. n_boot: bootstrap resamples of every CI.
        report_dir: the evaluation folder (None: `RUN/bundle_report`).
        n_checks: reference test images per class recorded in config.json (the suite re-scores them).
        command: the command that trained the run, quoted in the card.
        force: write into a non-empty `out` that holds no bundle, or another bundle (never a run folder).
        gate: fit the input gate; gate_ood: images of other kinds (cxr-ood layout) whose dev part it also
            learns from (its test part is only scored).
        history: earlier versions of this bundle, one dict of short texts each (version, data, test, ...),
            kept in config.json and the card's History table.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Settings whose `pepx export` option is not `--` + their name.
    FLAGS: ClassVar[dict[str, str]] = {"bundle_id": "--id", "targets": "--target", "half": "--fp32",
                                       "report_dir": "--report", "command": "--recipe", "gate": "--no-gate"}

    bundle_id: Text | None = None
    version: Text = "0.1.0"
    calibrate: Text | None = None
    targets: dict[str, Sensitivity] | None = None
    half: StrictBool = True
    n_boot: Annotated[int, Field(strict=True, ge=1, le=MAX_BOOT)] = N_BOOT
    report_dir: Path | None = None
    n_checks: Annotated[int, Field(strict=True, ge=1, le=1000)] = 4
    command: str | None = None
    force: StrictBool = False
    gate: StrictBool = True
    gate_ood: str | Path | None = None  # kept as given: the gate's config section quotes it
    history: list[Annotated[dict[str, str], Field(min_length=1)]] | None = None

    @field_validator("targets")
    @classmethod
    def _known_classes(cls, targets: dict[str, float] | None) -> dict[str, float] | None:
        unknown = sorted(set(targets or {}) - set(CLASSES))
        if unknown:
            raise ValueError(f"operating point for unknown class(es) {unknown}; classes: "
                             f"{', '.join(CLASSES)}")
        return targets

    @property
    def operating_targets(self) -> dict[str, float]:
        """`targets`, or `DEFAULT_TARGETS` when none were given."""
        return DEFAULT_TARGETS if self.targets is None else dict(self.targets)


__all__ = ["DEFAULT_TARGETS", "ExportSettings"]
