"""The gate at prediction time: `Gate.run(x)` gives the logits and one `GateResult` per preprocessed film.

Outcomes, worst first:
- `rejected`: not a frontal chest radiograph - the image is blank (one grey level after preprocessing), the
  gate score (P(not a frontal chest X-ray), `pepx.serving.gate.model`) is at or above the bundle's `reject`
  threshold, or the DICOM header says so (`pepx.serving.gate.dicom`). No class is given.
- `unfamiliar`: a frontal film unlike the training films - the feature distance is at or above the
  `unfamiliar` threshold. The class is given, marked low trust.
- `ok`; and `off` when the bundle has no gate or it was turned off (`--no-gate`).

The features come from the same forward pass as the logits (`FeatureTap`), so the gate costs a few small
matrix products per film.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from pepx.errors import BundleError
from pepx.serving.gate.dicom import describe_tags, tag_verdict
from pepx.serving.gate.features import FeatureTap
from pepx.serving.gate.model import GateModel
from pepx.serving.gate.section import GateSection

OUTCOMES = ("off", "ok", "unfamiliar", "rejected")  # in order of severity
#: A preprocessed input whose values span less than this is blank (one grey level).
BLANK_SPAN = 1e-6


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one image: `outcome` (one of OUTCOMES), `score` (P(not a frontal chest X-ray)),
    `distance` (to the training films; 0 = typical), and `reason` in plain words (None when ok)."""

    outcome: str = "off"
    score: float | None = None
    distance: float | None = None
    reason: str | None = None

    @property
    def rejected(self) -> bool:
        return self.outcome == "rejected"

    def with_dicom(self, tags: dict[str, str]) -> GateResult:
        """This verdict combined with what a DICOM header says (a header that rejects wins; tags reported)."""
        if not tags or self.outcome == "off":
            return self
        verdict, described = tag_verdict(tags), describe_tags(tags)
        if verdict is not None:
            return replace(self, outcome="rejected", reason=f"{verdict} ({described})")
        return replace(self, reason="; ".join(r for r in (self.reason, described) if r))


GATE_OFF = GateResult()


class Gate:
    """A bundle's gate on its network (`model`, eval mode), with the thresholds of `section`."""

    def __init__(self, section: GateSection, tensors: dict[str, torch.Tensor], model: nn.Module) -> None:
        try:
            self.model = GateModel.from_tensors(section.layers, tensors)
        except (KeyError, ValueError) as err:
            raise BundleError(f"the gate's arrays are incomplete or inconsistent ({err})") from None
        self.section = section
        self.tap = FeatureTap(model, section.layers)

    @property
    def thresholds(self) -> dict[str, float]:
        return self.section.thresholds

    def features(self, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits [N, K] and pooled stage features of preprocessed inputs [N, 1, S, S]."""
        logits, feats = self.tap(x)
        return logits.cpu().numpy(), {k: v.cpu().numpy() for k, v in feats.items()}

    def run(self, x: torch.Tensor) -> tuple[np.ndarray, list[GateResult]]:
        """Logits [N, K] of `x` and the gate's verdict on each input."""
        logits, feats = self.features(x)
        return logits, self.judge(x, feats)

    def judge(self, x: torch.Tensor, feats: dict[str, np.ndarray]) -> list[GateResult]:
        """The verdicts on inputs `x` [N, 1, S, S] whose pooled features are `feats`."""
        score, distance = self.model.scores(feats)
        flat = x.reshape(len(x), -1)
        span = (flat.amax(dim=1) - flat.amin(dim=1)).cpu().numpy()
        return [self._verdict(float(s), float(d), float(w)) for s, d, w in zip(score, distance, span,
                                                                                strict=True)]

    def _verdict(self, score: float, distance: float, span: float) -> GateResult:
        s, d = round(score, 6), round(distance, 4)
        if span < BLANK_SPAN:
            return GateResult("rejected", 1.0, d, "the image is blank (a single grey level)")
        if score >= self.section.reject:
            return GateResult("rejected", s, d, f"does not look like a frontal chest X-ray (gate score "
                                                f"{score:.2f} >= {self.section.reject:.2f})")
        if distance >= self.section.unfamiliar:
            return GateResult("unfamiliar", s, d, f"unlike the films this model was trained on (distance "
                                                  f"{distance:.2f} >= {self.section.unfamiliar:.2f}): "
                                                  "treat the class with caution")
        return GateResult("ok", s, d, None)


__all__ = ["GATE_OFF", "OUTCOMES", "Gate", "GateResult"]
