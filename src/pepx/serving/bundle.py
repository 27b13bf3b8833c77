"""Model bundle: the one folder a trained pepx model travels as, in the Hugging Face layout.

    BUNDLE/
      config.json         architecture and kwargs, classes in order, input size and channels, the
                          preprocessing, the calibration temperature, per-class operating points, pepx / torch
                          versions, and the sha256 of the weights
      model.safetensors   the weights (safetensors: loading never unpickles)
      README.md           the model card
      gate.safetensors    optional: the input gate's fitted arrays (config.json's `gate` section names it
                          with its sha256; `pepx.serving.gate.section`)

`load_bundle(path)` checks the folder before anything runs: config.json validated whole
(`pepx.serving.bundle_schema`), every file a regular file inside the folder (no symbolic link, no path out of
it), and the weights' sha256; any failure is a `BundleError` naming the bundle and the reason. Weights are
stored as fp16 for the large tensors (convolution and linear weights, >= 1,024 values: almost every byte)
and fp32 for the rest (batch-norm statistics, biases, PEPX-ResNet's A, B, C); they are computed in fp32.
A bundle's numbers (card, calibration, operating points) are measured on the weights as stored, after that
rounding.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

import pepx
from pepx.data.transforms import Preprocess
from pepx.errors import BundleError
from pepx.fileio import write_bytes, write_text
from pepx.models import create_model
from pepx.serving.bundle_schema import FORMAT, FORMAT_VERSION, validate_config
from pepx.serving.gate.section import GATE_FILE, GATE_KEY, GateSection, read_gate_section

CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
#: The bundle that ships inside the package (`pepx predict` without `--model`).
SHIPPED = "pepx-resnet-focal-cxr-real"
#: Floating tensors with at least this many values are stored as fp16 when `half=True`.
HALF_MIN_NUMEL = 1024
#: What `pepx.data` does to an image before the network sees it; recorded in config.json for other runtimes.
PREPROCESS_STEPS = (
    "read as grayscale float in [0, 1] (pepx.data.read_image; DICOM: modality + VOI LUT, MONOCHROME1 "
    "inverted)",
    "remove the top `top_crop` fraction of rows; centre-crop to a square when `square`",
    "min-max stretch to uint8, resize to image_size x image_size (Pillow bilinear, reducing_gap=2.0)",
    "`equalize: hist` = global histogram equalisation of that uint8 image: grey level g -> round(255 x share "
    "of pixels <= g) (idempotent; pepx.data.transforms.equalize)",
    "divide by 255; `normalize: image` = subtract the image's mean, divide by its sd (min 1e-3)",
)


def default_bundle_path() -> Path:
    """The folder of the bundle shipped with the package."""
    return Path(str(resources.files("pepx.serving").joinpath("bundles", SHIPPED)))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, eq=False)
class Bundle:
    """A loaded bundle: `config` (config.json), `card` (README.md), the verified weights and, when it has an
    input gate, the gate's verified arrays (`gate_tensors`; None without a gate)."""

    path: Path
    config: dict[str, Any]
    card: str
    tensors: dict[str, torch.Tensor] = field(repr=False)
    gate_tensors: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ what config.json says
    @property
    def id(self) -> str:
        return str(self.config["id"])

    @property
    def version(self) -> str:
        return str(self.config["version"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.config["classes"])

    @property
    def display(self) -> dict[str, str]:
        """Each class key -> its name as people read it (`class_display`; the key where there is none): the
        one vocabulary of every output (table, CSV / JSON, page, captions)."""
        names = self.config.get("class_display") or self.classes
        return dict(zip(self.classes, names, strict=True))

    @property
    def image_size(self) -> int:
        return int(self.config["input"]["image_size"])

    @property
    def in_chans(self) -> int:
        return int(self.config["input"].get("channels", 1))

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_any(self.config["preprocess"]["settings"])

    @property
    def temperature(self) -> float:
        return float(self.config["calibration"]["temperature"])

    @property
    def thresholds(self) -> dict[str, float]:
        """Operating point per class (probability at or above which the class is flagged); may be empty."""
        points = self.config.get("operating_points") or {}
        return {c: float(p["threshold"]) for c, p in points.items()}

    @property
    def gate(self) -> GateSection | None:
        """The input gate's checked config section; None when the bundle has none (the gate is off)."""
        return read_gate_section(self.config, self.path) if self.gate_tensors is not None else None

    @property
    def sha256(self) -> str:
        return str(self.config["weights"]["sha256"])

    @property
    def weights_bytes(self) -> int:
        """Size of `model.safetensors` as recorded in config.json."""
        return int(self.config["weights"]["bytes"])

    # ------------------------------------------------------------------ use
    def caveat(self, label: str | None) -> str | None:
        """The card's sentence about a prediction of class `label` (config.json `caveats`, written at export
        by `pepx.release.card.caveats_from_adults`); None: no label, or an older bundle without caveats."""
        if label is None:
            return None
        return (self.config.get("caveats") or {}).get(label)

    def build_model(self) -> nn.Module:
        """The network in eval mode, fp32, on the CPU, with the bundle's weights."""
        arch = self.config["architecture"]
        try:
            model = create_model(arch["name"], num_classes=len(self.classes), in_chans=self.in_chans,
                                 **arch.get("kwargs", {}))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in self.tensors.items()}, strict=True)
        except (RuntimeError, TypeError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise BundleError(f"{self.path}: weights do not fit {arch['name']}{arch.get('kwargs', {})}: "
                              f"{first}") from None
        return model.eval()

    def save(self, out: str | Path) -> Bundle:
        """Write this bundle (same weights bytes, config, card, gate) into the folder `out`; returns it
        loaded."""
        return _write(Path(out), copy.deepcopy(self.config), self.tensors, self.card, self.gate_tensors)

    def with_changes(self, config: dict[str, Any] | None = None, card: str | None = None,
                     gate_tensors: dict[str, torch.Tensor] | None = None) -> Bundle:
        """A copy in memory with `config` entries merged (top level), a new card and/or new gate arrays (with
        `config={"gate": ...}`); `save` writes it."""
        merged = {**copy.deepcopy(self.config), **(config or {})}
        gate = self.gate_tensors if gate_tensors is None else gate_tensors
        return Bundle(self.path, merged, self.card if card is None else card, self.tensors, gate)


# ---------------------------------------------------------------------- writing
def stored_tensors(model: nn.Module, half: bool = True) -> dict[str, torch.Tensor]:
    """The state dict as it is stored: large floating tensors in fp16 when `half` (see module docstring)."""
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point() and v.numel() >= HALF_MIN_NUMEL:
            v = v.half()
        out[k] = v.clone()
    return out


def round_like_bundle(model: nn.Module, half: bool = True) -> nn.Module:
    """Load the stored (rounded) weights back into `model` in place: it then scores exactly as its bundle."""
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in stored_tensors(model, half).items()})
    return model


def bundle_config(model_name: str, model_kwargs: dict[str, Any], *, image_size: int,
                  preprocess: Preprocess | dict[str, Any] | None = None, in_chans: int = 1,
                  classes: tuple[str, ...] = pepx.CLASSES, bundle_id: str = "pepx-model",
                  version: str = "0.1.0", temperature: float = 1.0,
                  operating_points: dict[str, dict[str, Any]] | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json's content, less the `weights` entry (written by `write_bundle`)."""
    settings = Preprocess.from_any(preprocess)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "id": bundle_id, "version": version,
        "architecture": {"name": model_name, "kwargs": dict(model_kwargs)},
        "classes": list(classes), "class_display": list(pepx.CLASS_DISPLAY) if classes == pepx.CLASSES else
        list(classes),
        "input": {"image_size": int(image_size), "channels": int(in_chans), "layout": "NCHW float32"},
        "preprocess": {"settings": {"top_crop": settings.top_crop, "square": settings.square,
                                    "normalize": settings.normalize, "equalize": settings.equalize},
                       "steps": list(PREPROCESS_STEPS)},
        "calibration": {"method": "temperature", "temperature": float(temperature),
                        "probabilities": "softmax(logits / temperature)"},
        "operating_points": operating_points or {},
        "versions": {"pepx": pepx.__version__, "torch": torch.__version__.split("+")[0],
                     "python": platform.python_version()},
        **(extra or {}),
    }


def write_bundle(model: nn.Module, out: str | Path, config: dict[str, Any], card: str = "",
                 half: bool = True) -> Bundle:
    """Write `model`'s weights, `config` (from `bundle_config`) and the model card `card` into `out`."""
    return _write(Path(out), copy.deepcopy(config), stored_tensors(model, half), card)


def gate_file(tensors: dict[str, torch.Tensor]) -> tuple[bytes, dict[str, Any]]:
    """The gate's arrays as safetensors bytes and config.json's entries naming them (file, sha256, bytes)."""
    data = save_safetensors({k: v.contiguous() for k, v in tensors.items()}, metadata={"format": "pt"})
    return data, {"file": GATE_FILE, "sha256": sha256_bytes(data), "bytes": len(data)}


def _write(out: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor], card: str,
           gate_tensors: dict[str, torch.Tensor] | None = None) -> Bundle:
    # one metadata key only: safetensors writes a metadata map in no fixed order, and the bytes must repeat
    data = save_safetensors(tensors, metadata={"format": "pt"})
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in tensors.values()})
    config["weights"] = {"file": WEIGHTS_FILE, "sha256": sha256_bytes(data), "bytes": len(data),
                         "dtypes": dtypes, "parameters": int(sum(v.numel() for v in tensors.values()
                                                                 if v.is_floating_point()))}
    gate_data = None
    if gate_tensors is None:
        config.pop(GATE_KEY, None)  # a gate section without its arrays would not load
    else:
        gate_data, entry = gate_file(gate_tensors)
        config[GATE_KEY] = {**config.get(GATE_KEY, {}), **entry}
    write_bytes(out / WEIGHTS_FILE, data)
    if gate_data is not None:
        write_bytes(out / GATE_FILE, gate_data)
    write_text(out / CONFIG_FILE, json.dumps(config, indent=2, allow_nan=False) + "\n")
    write_text(out / CARD_FILE, card if card.endswith("\n") or not card else card + "\n")
    return load_bundle(out)


# ---------------------------------------------------------------------- loading
def is_bundle(path: str | Path) -> bool:
    """True when `path` is a folder holding a bundle's config.json (a run folder has config.yaml instead)."""
    return (Path(path) / CONFIG_FILE).is_file()


def load_bundle(path: str | Path | None = None) -> Bundle:
    """Read and check the bundle folder `path` (None: the shipped bundle). Never unpickles.

    Raises `BundleError` naming the bundle and the reason for a missing, malformed or linked file (a file
    must be a regular file inside the folder), a config.json that fails `bundle_schema.validate_config`, or
    weights whose sha256 differs from the one config.json records.
    """
    root = default_bundle_path() if path is None else Path(path)
    if root.is_file() and root.name == CONFIG_FILE:
        root = root.parent
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle folder")
    if not (root / CONFIG_FILE).exists() and not (root / CONFIG_FILE).is_symlink():
        if (root / "config.yaml").is_file():
            raise BundleError(f"{root} is a run folder, not a bundle: make one with `pepx export {root} "
                              "--out BUNDLE`")
        raise BundleError(f"{root}: not a bundle (no {CONFIG_FILE})")
    config = _read_config(root)
    weights = bundle_file(root, str(config["weights"].get("file", WEIGHTS_FILE)), "weights file")
    data = weights.read_bytes()
    expected = str(config["weights"]["sha256"])
    if sha256_bytes(data) != expected:
        raise BundleError(f"{root}: {weights.name} fails its checksum (sha256 {sha256_bytes(data)[:16]}..., "
                          f"config.json says {expected[:16]}...): the weights were changed or damaged")
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise BundleError(f"{root}: {weights.name} is not a readable safetensors file ({err})") from None
    card_file = root / CARD_FILE
    card = bundle_file(root, CARD_FILE, "model card").read_text() if card_file.exists() or \
        card_file.is_symlink() else ""
    for fmt, entry in (config.get("exports") or {}).items():
        if (root / entry["file"]).exists() or (root / entry["file"]).is_symlink():
            bundle_file(root, entry["file"], f"{fmt} export")
    return Bundle(root, config, card, tensors, _read_gate(root, read_gate_section(config, root)))


def _read_gate(root: Path, section: GateSection | None) -> dict[str, torch.Tensor] | None:
    """The gate's arrays, checked against config.json's sha256; None for a bundle without a gate."""
    if section is None:
        return None
    file = root / section.file
    data = bundle_file(root, section.file, "gate file").read_bytes() if file.exists() or file.is_symlink() \
        else b""
    if sha256_bytes(data) != section.sha256:
        raise BundleError(f"{root}: the gate's {section.file} is missing or fails its checksum: refit it "
                          "(`pepx gate fit`) or remove config.json's gate section")
    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise BundleError(f"{root}: {section.file} is not a readable safetensors file ({err})") from None


def check_bundle_out(out: str | Path, bundle_id: str, force: bool = False) -> Path:
    """Where `pepx export` may write the bundle `bundle_id`: a new or empty folder, or a bundle with the same
    id (written over); with `force` any folder but a run folder. Else `BundleError` naming `--out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BundleError(f"--out {out}: is a file; name a folder for the bundle")
    if (out / "config.yaml").is_file():
        raise BundleError(f"--out {out}: is the run folder of a `pepx train` run (its weights would be "
                          "overwritten); name another folder")
    if force or not out.is_dir() or not any(out.iterdir()):
        return out
    if is_bundle(out):
        try:
            other = json.loads((out / CONFIG_FILE).read_text()).get("id")
        except (OSError, ValueError, AttributeError):
            other = None
        if other == bundle_id:
            return out
        raise BundleError(f"--out {out}: holds bundle {other!r}, not {bundle_id!r}: choose another folder, "
                          "or --force to write over it")
    first = sorted(p.name for p in out.iterdir())[0]
    raise BundleError(f"--out {out}: is not empty and holds no bundle (e.g. {first}): choose a new or empty "
                      "folder, or --force to write into it")


def bundle_file(root: Path, name: str, what: str) -> Path:
    """`root / name` when it is a regular file inside the bundle (not a symbolic link: one would let a
    bundle serve or copy any file of the machine), else `BundleError`."""
    path = root / name
    if path.is_symlink():
        raise BundleError(f"{root}: {what} {name} is a symbolic link ({path.readlink()}); a bundle's files "
                          "must be regular files inside its folder")
    if not path.is_file():
        raise BundleError(f"{root}: {what} {name} is missing" if not path.exists() else
                          f"{root}: {what} {name} is not a regular file")
    return path


def _read_config(root: Path) -> dict[str, Any]:
    try:
        config = json.loads(bundle_file(root, CONFIG_FILE, "config").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{root}: {CONFIG_FILE} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise BundleError(f"{root}: {CONFIG_FILE} is not a pepx bundle config (format != {FORMAT!r})")
    validate_config(config, str(root))
    return config


__all__ = ["Bundle", "BundleError", "bundle_config", "check_bundle_out", "default_bundle_path", "load_bundle",
           "round_like_bundle", "stored_tensors", "write_bundle"]
