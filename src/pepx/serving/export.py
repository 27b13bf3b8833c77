"""Export a bundle's network for other runtimes: ONNX (ONNX Runtime) and TorchScript, with a parity check.

Both exports hold the whole calibrated head: input `image` [N, 1, S, S] (preprocessed as config.json's
`preprocess` says; N is dynamic), outputs `logits` and `probabilities` = softmax(logits / T). `parity` is the
largest absolute difference between the exported and the eager PyTorch probabilities on the same inputs.
Files written into a bundle folder are listed in config.json's `exports` with their sha256.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from pepx.data.cache import cache_root
from pepx.data.io import read_image
from pepx.data.transforms import model_input
from pepx.errors import BundleError, ConfigError
from pepx.fileio import write_bytes, write_text
from pepx.serving.bundle import CONFIG_FILE, Bundle, bundle_file, sha256_bytes

FORMATS = ("onnx", "torchscript")
FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
INPUT, OUTPUTS = "image", ("logits", "probabilities")


class CalibratedNet(nn.Module):
    """`model` followed by temperature scaling: `x -> (logits, softmax(logits / T))`."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("inv_temperature", torch.tensor(1.0 / float(temperature)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return logits, torch.softmax(logits * self.inv_temperature, dim=1)


def calibrated_net(bundle: Bundle) -> CalibratedNet:
    return CalibratedNet(bundle.build_model(), bundle.temperature).eval()


def example_input(bundle: Bundle, n: int = 2) -> torch.Tensor:
    return torch.randn(n, bundle.in_chans, bundle.image_size, bundle.image_size, generator=torch.Generator()
                       .manual_seed(0))


def onnx_bytes(bundle: Bundle) -> bytes:
    """The bundle's calibrated network as an ONNX model (dynamic batch)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its successor
        torch.onnx.export(calibrated_net(bundle), (example_input(bundle),), buffer, input_names=[INPUT],
                          output_names=list(OUTPUTS), dynamic_axes={INPUT: {0: "batch"},
                                                                    **{o: {0: "batch"} for o in OUTPUTS}},
                          dynamo=False)
    return buffer.getvalue()


def torchscript_bytes(bundle: Bundle) -> bytes:
    """The bundle's calibrated network traced to TorchScript (any batch size; the input size is fixed)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(calibrated_net(bundle), example_input(bundle), check_trace=False)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def onnx_session(bundle: Bundle, path: str | Path | None = None):
    """An ONNX Runtime session of the bundle: `path`, else the bundle's own model.onnx (checked against its
    sha256 in config.json), else an export made once into `$PEPX_CACHE/onnx/`."""
    file = Path(path) if path is not None else _bundle_file(bundle, "onnx") or _cached_onnx(bundle)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])


def _bundle_file(bundle: Bundle, fmt: str) -> Path | None:
    entry = (bundle.config.get("exports") or {}).get(fmt)
    if not entry:
        return None
    file = bundle_file(bundle.path, entry["file"], f"{fmt} export")  # regular, inside the bundle
    if sha256_bytes(file.read_bytes()) != entry["sha256"]:
        raise BundleError(f"{bundle.path}: {entry['file']} fails its checksum")
    return file


def _cached_onnx(bundle: Bundle) -> Path:
    folder = cache_root() / "onnx"
    file = folder / f"{bundle.sha256[:20]}-T{bundle.temperature:.6g}.onnx"
    if not file.is_file():
        write_bytes(file, onnx_bytes(bundle))
    return file


def parity(bundle: Bundle, fmt: str, file: str | Path, inputs: torch.Tensor) -> float:
    """Max |p_export - p_eager| over `inputs` [N, 1, S, S] (preprocessed images)."""
    with torch.inference_mode():
        eager = calibrated_net(bundle)(inputs)[1].numpy()
    if fmt == "onnx":
        (got,) = onnx_session(bundle, file).run([OUTPUTS[1]], {INPUT: inputs.numpy()})
    elif fmt == "torchscript":
        with torch.inference_mode():
            got = torch.jit.load(str(file), map_location="cpu")(inputs)[1].numpy()
    else:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {FORMATS}")
    return float(np.abs(np.asarray(got) - eager).max())


def parity_inputs(bundle: Bundle, limit: int = 32) -> tuple[torch.Tensor, str]:
    """Preprocessed inputs for the parity check: the bundle's reference test images (config.json `checks`)
    where they can be found, else seeded random inputs; and a phrase saying which."""
    paths = check_images(bundle)[:limit]
    if paths:
        images = [model_input(read_image(p), bundle.image_size, bundle.preprocess) for p in paths]
        return torch.from_numpy(np.stack(images)).unsqueeze(1), f"{len(paths)} test images"
    return example_input(bundle, 16), "16 random inputs (the bundle's reference images were not found)"


def check_images(bundle: Bundle) -> list[Path]:
    """The bundle's reference images (config.json `checks`) that exist here; paths are relative to the folder
    of the data source they came from (`csv:FILE` -> FILE's folder, `folder:DIR` -> DIR)."""
    checks = bundle.config.get("checks") or {}
    fmt, _, where = str(checks.get("data", "")).partition(":")
    root = Path(where).parent if fmt == "csv" else Path(where) if fmt == "folder" else Path()
    paths = [root / c["path"] for c in checks.get("images", [])]
    return [p for p in paths if p.is_file()]


def export_formats(bundle: Bundle, formats: list[str] | tuple[str, ...], inputs: torch.Tensor,
                   what: str = "") -> dict[str, dict[str, Any]]:
    """Write each format's file into the bundle folder, measure its parity on `inputs` (described by `what`),
    record them in config.json's `exports`; returns those entries."""
    exports = dict(bundle.config.get("exports") or {})
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
        data = onnx_bytes(bundle) if fmt == "onnx" else torchscript_bytes(bundle)
        file = write_bytes(bundle.path / FILES[fmt], data)
        exports[fmt] = {"file": FILES[fmt], "sha256": sha256_bytes(data), "bytes": len(data),
                        "parity_max_abs_prob_diff": parity(bundle, fmt, file, inputs),
                        "parity_inputs": what or f"{len(inputs)} inputs",
                        "runtime": "onnxruntime" if fmt == "onnx" else f"torch {torch.__version__}"}
    config = {**bundle.config, "exports": exports}
    write_text(bundle.path / CONFIG_FILE, json.dumps(config, indent=2, allow_nan=False) + "\n")
    return exports


def export_report(bundle: Bundle, formats: Sequence[str]) -> list[str]:
    """`pepx export --format ...`: write each format into the bundle with its parity on the bundle's reference
    test images (or random inputs when those are not at hand); one line per format."""
    inputs, what = parity_inputs(bundle)
    return [f"{fmt}: {bundle.path / entry['file']}: max |p - p_eager| = "
            f"{entry['parity_max_abs_prob_diff']:.2e} on {what}"
            for fmt, entry in export_formats(bundle, list(formats), inputs, what).items()]


__all__ = ["FORMATS", "CalibratedNet", "check_images", "export_formats", "export_report", "onnx_bytes",
           "onnx_session", "parity", "parity_inputs", "torchscript_bytes"]
