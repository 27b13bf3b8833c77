"""`Predictor`: a bundle meets new images - preprocess, batched forward, calibrated probabilities, Grad-CAM.

    predictor = Predictor.from_bundle(None)           # the shipped bundle; or a bundle folder
    predictor.predict(["a.png", "b.dcm", array])      # -> [Prediction, ...]; a bad file: a row with its error
    predictor.explain(read_image("a.png")).overlay()  # Grad-CAM picture (PIL, RGB)

Preprocessing is `pepx.data`'s own (`crop_resize` to the bundle's size, then per-image normalisation), so a
bundle scores images exactly as its training run's evaluation did. Probabilities are `softmax(logits / T)`
with the bundle's temperature T. `predict_tensor` holds no state between calls and may be called from several
threads at once; `explain` runs on a private copy of the network under a lock, so it never disturbs them.

When the bundle has an input gate (`pepx.serving.gate`) and `gate=True` (the default), every prediction
carries the gate's verdict: `rejected` films get no class, `unfamiliar` ones keep theirs with the reason.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pepx.data.errors import DataError
from pepx.data.io import is_dicom, read_image
from pepx.data.transforms import model_input
from pepx.errors import ConfigError
from pepx.fileio import display_path
from pepx.serving.bundle import Bundle, load_bundle
from pepx.serving.export import onnx_session
from pepx.serving.gate.dicom import read_tags
from pepx.serving.gate.gate import GATE_OFF, Gate, GateResult
from pepx.serving.gradcam import (
    Explanation,
    check_layer,
    default_layer,
    grad_cam,
    seen_box,
    to_image_frame,
)

RUNTIMES = ("torch", "onnx")
#: `progress=None` shows a bar (stderr, terminals only) from this many inputs on.
PROGRESS_FROM = 32
Progress = bool | Callable[[int, int], Any] | None


@dataclass(frozen=True)
class Prediction:
    """One input's result. `status` is "ok" or "error"; on error `label` is None, `probabilities` empty and
    `error` says why. `flagged`: classes at or above their bundle operating point. `gate`: the input gate's
    verdict (`GateResult`: `.outcome` ok / unfamiliar / rejected / off, `.score`, `.distance`, `.reason`); a
    rejected film has no label and no probabilities. `caveat`: what the bundle's card says about calls of
    this class (e.g. how many adult films called COVID-19 were another pneumonia); None without one."""

    source: str
    label: str | None
    probabilities: dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    flagged: tuple[str, ...] = ()
    gate: GateResult = GATE_OFF
    caveat: str | None = None  # the model card's sentence about this class (`Bundle.caveat`)

    def to_row(self, names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Flat dict for CSV / JSON: source, status, label, prob_<class>..., flagged, error, gate,
        gate_score, gate_distance, gate_reason, caveat. `names` (`Bundle.display`) renames the classes in
        label, prob_ columns and flagged."""
        name = (lambda c: names.get(c, c)) if names else (lambda c: c)
        row: dict[str, Any] = {"source": display_path(self.source), "status": self.status,
                               "label": None if self.label is None else name(self.label)}
        row.update({f"prob_{name(c)}": p for c, p in self.probabilities.items()})
        row["flagged"] = ";".join(map(name, self.flagged))
        row["error"] = self.error
        g = self.gate
        row.update(gate=g.outcome if self.status == "ok" else None, gate_score=g.score,
                   gate_distance=g.distance, gate_reason=g.reason)
        row["caveat"] = self.caveat
        return row


class Predictor:
    """Run a bundle on images.

    Args:
        bundle: a loaded `Bundle` (`Predictor.from_bundle(path)` loads one).
        runtime: "torch" (eager PyTorch) or "onnx" (ONNX Runtime on the CPU: the bundle's model.onnx, or an
            export made once into the pepx cache).
        device: torch device (default: CUDA when present, else the CPU).
        channels_last: run the torch network in channels-last memory format (often faster on CPUs; the
            numbers agree to ~1e-6, not bit for bit).
        gate: run the bundle's input gate, when it has one (`--no-gate`: False). With `runtime="onnx"` the
            gate reads its features from the torch network (a second forward pass).
    """

    def __init__(self, bundle: Bundle, runtime: str = "torch", device: str | torch.device | None = None,
                 channels_last: bool = False, gate: bool = True) -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
        self.bundle = bundle
        self.runtime = runtime
        self.device = resolve_device(device)
        self.classes = bundle.classes
        self.image_size = bundle.image_size
        self.temperature = bundle.temperature
        self._settings = bundle.preprocess
        self._thresholds = bundle.thresholds
        self._format = torch.channels_last if channels_last else torch.contiguous_format
        self._model = bundle.build_model().to(self.device, memory_format=self._format)
        self._session = None
        if runtime == "onnx":
            self._session = onnx_session(bundle)
        self._cam_model: torch.nn.Module | None = None
        self._cam_lock = threading.Lock()
        section = bundle.gate if gate else None
        self.gate = Gate(section, bundle.gate_tensors, self._model) if gate and section is not None else None
        self.gate_status = ("on" if self.gate is not None else "off (turned off)" if not gate
                            else "off (this bundle has no gate: `pepx gate fit` makes one)")

    @classmethod
    def from_bundle(cls, path: str | Path | None = None, runtime: str = "torch",
                    device: str | torch.device | None = None, gate: bool = True) -> Predictor:
        """Load the bundle folder `path` (None: the bundle shipped with pepx) and wrap it."""
        return cls(load_bundle(path), runtime=runtime, device=device, gate=gate)

    # ------------------------------------------------------------------ pieces
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """float32 [H, W] in [0, 1] (as `pepx.data.read_image` returns) -> the network's input [1, S, S]."""
        x = model_input(_check_image(image), self.image_size, self._settings)
        return torch.from_numpy(x).unsqueeze(0)

    def predict_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Preprocessed inputs [N, 1, S, S] -> calibrated probabilities [N, num_classes] (float32)."""
        logits = torch.from_numpy(self.predict_logits(x))
        return torch.softmax(logits / self.temperature, dim=1).numpy()

    def predict_logits(self, x: torch.Tensor) -> np.ndarray:
        """Uncalibrated logits [N, num_classes] of preprocessed inputs (what calibration is fitted on)."""
        self._check_input(x)
        if self._session is not None:
            (logits,) = self._session.run(["logits"], {"image": x.float().cpu().numpy()})
            return np.asarray(logits, dtype=np.float32)
        with torch.inference_mode():
            return self._model(self._to_device(x)).float().cpu().numpy()

    def score_tensor(self, x: torch.Tensor) -> tuple[np.ndarray, list[GateResult]]:
        """Preprocessed inputs [N, 1, S, S] -> (calibrated probabilities [N, C], the gate's verdict on each);
        one forward pass (torch runtime). Verdicts are `GATE_OFF` when there is no gate. Thread-safe."""
        if self.gate is None:
            return self.predict_tensor(x), [GATE_OFF] * len(x)
        self._check_input(x)
        logits, verdicts = self.gate.run(self._to_device(x))
        if self._session is not None:  # ONNX Runtime's logits; the gate's features came from torch
            logits = self.predict_logits(x)
        return torch.softmax(torch.from_numpy(logits) / self.temperature, dim=1).numpy(), verdicts

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().to(self.device).contiguous(memory_format=self._format)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.bundle.in_chans or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"expected [N, {self.bundle.in_chans}, S, S] inputs, got {tuple(x.shape)}")

    # ------------------------------------------------------------------ many inputs
    def predict(self, inputs: Sequence[str | Path | np.ndarray], batch_size: int = 32,
                progress: Progress = None) -> list[Prediction]:
        """One `Prediction` per input, in order. Paths are read with `pepx.data.read_image` (PNG, JPEG, DICOM,
        ...); arrays must be 2-D grayscale in [0, 1]. An input that cannot be read is an error row and the
        others go on. `progress`: None (a bar on stderr for many inputs at a terminal), True, False, or a
        callable `(done, total)`."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        results: list[Prediction] = []
        with _Progress(progress, len(inputs)) as bar:
            for chunk in _chunks(list(inputs), batch_size):
                results += self._predict_chunk(chunk, offset=len(results))
                bar.update(len(chunk))
        return results

    def _predict_chunk(self, chunk: list[str | Path | np.ndarray], offset: int) -> list[Prediction]:
        out: list[Prediction | None] = [None] * len(chunk)
        tensors, where, tags = [], [], []
        for i, item in enumerate(chunk):
            name = _name(item, offset + i)
            try:
                image = item if isinstance(item, np.ndarray) else read_image(item)
                tensors.append(self.preprocess(image))
                where.append(i)
                dicom = self.gate is not None and not isinstance(item, np.ndarray) and is_dicom(item)
                tags.append(read_tags(item) if dicom else {})
            except (DataError, ValueError, OSError) as err:
                reason = getattr(err, "reason", None) or str(err)
                out[i] = Prediction(name, None, {}, status="error", error=reason)
        if tensors:
            probs, verdicts = self.score_tensor(torch.stack(tensors))
            for i, p, g, t in zip(where, probs, verdicts, tags, strict=True):
                out[i] = self.prediction(_name(chunk[i], offset + i), p, g.with_dicom(t))
        return [p for p in out if p is not None]

    def prediction(self, source: str, probs: np.ndarray, gate: GateResult = GATE_OFF) -> Prediction:
        """The `Prediction` of `source` from one row of calibrated probabilities [C] (`predict_tensor`,
        `score_tensor`) and its gate verdict: label, operating-point flags and caveat; a film the gate
        rejected gets no class and no probabilities. `predict` and the HTTP API both answer with it."""
        if gate.rejected:
            return Prediction(source, None, {}, gate=gate)
        values = {c: float(v) for c, v in zip(self.classes, probs, strict=True)}
        flagged = tuple(c for c, t in self._thresholds.items() if values.get(c, 0.0) >= t)
        label = self.classes[int(np.argmax(probs))]
        return Prediction(source, label, values, flagged=flagged, gate=gate,
                          caveat=self.bundle.caveat(label))

    # ------------------------------------------------------------------ Grad-CAM
    def explain(self, image: np.ndarray, class_index: int | None = None,
                layer: str | None = None) -> Explanation:
        """Grad-CAM of `class_index` (default: the predicted class) at `layer` (default: the last stage) for a
        float [H, W] image in [0, 1]; the map is returned at the image's size (see `Explanation`)."""
        image = _check_image(image)
        x = self.preprocess(image).unsqueeze(0)
        with self._cam_lock:
            model = self._cam_net()
            layer = layer or default_layer(model)
            raw, index, _ = grad_cam(model, x.to(self.device), class_index, layer)
        s = self._settings
        full = to_image_frame(raw, image.shape, s.top_crop, s.square)
        return Explanation(full, raw, index, self.classes[index], image, layer,
                           seen=seen_box(image.shape, s.top_crop, s.square))


    def check_layer(self, layer: str, option: str = "layer") -> None:
        """Raise `ConfigError` naming `option` unless `layer` is a Grad-CAM target of this network."""
        with self._cam_lock:
            check_layer(self._cam_net(), layer, self.image_size, self.bundle.in_chans, option)

    def _cam_net(self) -> torch.nn.Module:
        """The private copy of the network Grad-CAM runs on (call under `_cam_lock`)."""
        if self._cam_model is None:
            self._cam_model = self.bundle.build_model().to(self.device)
        return self._cam_model


# ---------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch device that exists here (None: CUDA when present, else the CPU); `ConfigError`
    listing the devices of this machine otherwise."""
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = torch.backends.mps.is_available()
    if device is None:
        return torch.device("cuda" if cuda else "cpu")
    choices = ["cpu", *(["cuda", *(f"cuda:{i}" for i in range(cuda))] if cuda else []),
               *(["mps"] if mps else [])]
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device {str(device)!r}: choose one of {', '.join(choices)}") from None
    if dev.type == "cpu" or (dev.type == "cuda" and (dev.index or 0) < cuda) or (dev.type == "mps" and mps):
        return dev
    raise ConfigError(f"--device {str(device)!r}: not on this machine; choose one of {', '.join(choices)}")


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"expected a 2-D grayscale image, got an array of shape {image.shape}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"image values must lie in [0, 1] (pepx.data.read_image), got [{lo:.3g}, {hi:.3g}]")
    return image


def _name(item: str | Path | np.ndarray, index: int) -> str:
    return f"array[{index}]" if isinstance(item, np.ndarray) else str(item)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Progress:
    """tqdm on stderr, or a `(done, total)` callback, or nothing."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.total, self.done, self.bar, self.callback = total, 0, None, None
        if callable(progress) and not isinstance(progress, bool):
            self.callback = progress
        elif progress or (progress is None and total >= PROGRESS_FROM and sys.stderr.isatty()):
            self.bar = tqdm(total=total, unit="img", file=sys.stderr, desc="predict")

    def __enter__(self) -> _Progress:
        return self

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["Prediction", "Predictor", "RUNTIMES"]
