"""The JSON `POST /v1/predict` answers, as pydantic models: they document the API in OpenAPI (/docs); the
route builds plain dicts of the same shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class PredictionOut(BaseModel):
    """One image that was read. A `rejected` image has no class: `label`, `label_display` are null and
    `probabilities`, `flagged` empty."""

    filename: str
    status: Literal["ok"]
    label: str | None = Field(description="predicted class; null when the input gate rejected the image")
    label_display: str | None = Field(description="the class as shown to people (the paper's names)")
    probabilities: dict[str, float] = Field(description="calibrated probability per class")
    flagged: list[str] = Field(description="classes at or above their bundle operating point")
    gate: Literal["ok", "unfamiliar", "rejected", "off"] = Field(
        description="the input gate: rejected = not a frontal chest X-ray (no class); unfamiliar = a frontal "
                    "film unlike the training films (class given, low trust); off = no gate")
    gate_score: float | None = Field(description="P(not a frontal chest X-ray), 0-1 (null: gate off)")
    gate_distance: float | None = Field(
        description="distance of the film's features to the training films' (0 = typical)")
    gate_reason: str | None = Field(description="why, in plain words (and the DICOM tags read); null if ok")
    caveat: str | None = Field(None, description="the model card's caveat for calls of this class (counted "
                               "on the adult films of the bundle's test split); null without one")
    media_type: str
    batch_size: int
    timing_ms: dict[str, float]
    cam: dict[str, Any] | None = Field(None, description="Grad-CAM pictures (`?cam=true`, not for rejected)")


class PredictionError(BaseModel):
    """One file that could not be read (too large, not an image, undecodable)."""

    filename: str
    status: Literal["error"]
    code: int
    error: str


class PredictResponse(BaseModel):
    model: dict[str, str]
    runtime: str
    gate: str = Field(description="whether the input gate is on, or why it is off")
    notice: str
    predictions: list[PredictionOut | PredictionError]
    timing_ms: dict[str, float]


__all__ = ["PredictResponse", "PredictionError", "PredictionOut"]
