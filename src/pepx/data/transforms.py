"""Preprocessing (once, into the cache) and augmentation + normalisation (every read).

Preprocessing: read -> optional top crop (COVID-Net removes the top 8 %) -> centre crop to a square ->
resize to `image_size` (Pillow, antialiased) -> min-max to uint8 (what the cache stores). At read time:
[acquisition augmentation, `pepx.data.acquisition`] -> optional global histogram equalisation
(``equalize="hist"``: every film gets the flat histogram cxr-real's `rsna` films were given by their
collection, so that look no longer tells sources apart) -> [geometric augmentation] -> per-image
normalisation (zero mean, unit variance). Augmentation draws come from a generator seeded by
(seed, epoch, index).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from pepx.data.io import read_image

#: Largest share of rows `top_crop` may remove (exclusive); the values `equalize` and `normalize` take.
MAX_TOP_CROP = 0.5
EQUALIZE: tuple[str, ...] = ("none", "hist")
NORMALIZE: tuple[str, ...] = ("image", "none")


@dataclass(frozen=True)
class Preprocess:
    """Preprocessing settings; `top_crop` and `square` key the cache (the others apply at read time).

    Raises ValueError for an unknown `normalize` or `equalize` mode, or a `top_crop` / `square` of the wrong
    type or range."""

    top_crop: float = 0.0  # fraction of the height removed from the top (COVID-Net: 0.08)
    square: bool = True  # centre crop to a square before resizing (else the image is squashed)
    normalize: str = "image"  # "image": per-image zero mean / unit sd; "none": [0, 1]
    equalize: str = "none"  # "hist": global histogram equalisation of the resized film; "none": off

    def __post_init__(self) -> None:
        for name, choices in (("normalize", NORMALIZE), ("equalize", EQUALIZE)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(choices)}")
        crop = self.top_crop
        if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0.0 <= crop < MAX_TOP_CROP:
            raise ValueError(f"top_crop={crop!r}: must be a number in [0, {MAX_TOP_CROP})")
        if not isinstance(self.square, bool):
            raise ValueError(f"square must be true or false, got {self.square!r}")

    @classmethod
    def from_any(cls, value: Preprocess | dict[str, Any] | None) -> Preprocess:
        """Accept a Preprocess, a dict of its fields, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown preprocess setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**value)

    def cache_id(self, size: int) -> str:
        """Hash of the settings that change the cached pixels."""
        cached = {"top_crop": round(self.top_crop, 6), "square": self.square, "size": size}
        return f"s{size}-" + hashlib.sha1(json.dumps(cached, sort_keys=True).encode()).hexdigest()[:12]


def crop_resize(img: np.ndarray, size: int, top_crop: float = 0.0, square: bool = True) -> np.ndarray:
    """float [0, 1] 2-D image -> uint8 [size, size] (top crop, centre square crop, antialiased resize)."""
    h, w = img.shape
    if top_crop > 0:
        img = img[int(round(h * top_crop)) :]
        h = img.shape[0]
    if square and h != w:
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        img = img[y0 : y0 + s, x0 : x0 + s]
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    pil = Image.fromarray((img * 255.0 + 0.5).astype(np.uint8))
    # Pillow's reducing_gap pre-shrinks large images by block averaging first: much faster, same look
    pil = pil.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(pil, dtype=np.uint8)


def equalize(img: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of a uint8 image: each grey level becomes round(255 x the share of pixels
    at or below it).

    Idempotent, so a film its collection equalised before (cxr-real's `rsna`) ends up exactly like any other
    film equalised once. Hand-written (3 lines of numpy) because Pillow's `ImageOps.equalize` is not: its
    scale depends on the count of the top grey level, which its first pass changes, so a second pass moves a
    64-px film's pixels by ~7 grey levels, a look a network trained on equalised films still tells apart
    (tests/probes/test_probes.py measures it)."""
    cdf = np.cumsum(np.bincount(img.ravel(), minlength=256))
    lut = np.rint(cdf * (255.0 / max(int(cdf[-1]), 1))).astype(np.uint8)
    return lut[img]


def load_preprocessed(path: str, size: int, settings: Preprocess) -> np.ndarray:
    """Read and preprocess one file (what the cache stores)."""
    return crop_resize(read_image(path), size, settings.top_crop, settings.square)


def normalize_array(x: np.ndarray, mode: str = "image") -> np.ndarray:
    """`normalize` for a float32 numpy image (same result)."""
    if mode == "none":
        return x
    flat = x.ravel()
    n = flat.size
    mean = float(flat.sum(dtype=np.float64)) / n
    # one dot product instead of np.std: a third of the time on a small image
    var = max(float(np.dot(flat, flat)) - n * mean * mean, 0.0) / max(n - 1, 1)
    return ((x - np.float32(mean)) * np.float32(1.0 / max(var**0.5, 1e-3))).astype(np.float32, copy=False)


def model_input(image: np.ndarray, size: int, settings: Preprocess) -> np.ndarray:
    """float [H, W] in [0, 1] -> the network's float32 [size, size] input: exactly what `CXRDataset` serves
    for that file without augmentation (cache step `crop_resize`, then `normalize_array`)."""
    small = crop_resize(image, size, settings.top_crop, settings.square)
    if settings.equalize == "hist":
        small = equalize(small)
    return normalize_array(small.astype(np.float32) / 255.0, settings.normalize)


def normalize(x: torch.Tensor, mode: str = "image") -> torch.Tensor:
    """Per-image intensity normalisation of a [1, S, S] float tensor in [0, 1]."""
    if mode == "none":
        return x
    mean, std = x.mean(), x.std()
    return (x - mean) / std.clamp_min(1e-3)


@dataclass(frozen=True)
class Augment:
    """Ranges of the training augmentation (drawn uniformly in +-range)."""

    rotate_deg: float = 7.0
    shift: float = 0.06  # fraction of the side
    zoom: float = 0.08  # relative
    brightness: float = 0.08  # added, in [0, 1] units
    contrast: float = 0.12  # relative
    hflip: bool = False  # anatomy is not mirror-symmetric (heart on the left): off by default


def item_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one item in one epoch: a pure function of (seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]))


def augment(
    x: torch.Tensor, rng: np.random.Generator, cfg: Augment = Augment(), mode: str = "image"
) -> torch.Tensor:
    """Training view of a [1, S, S] image in [0, 1]: random rotation/shift/zoom (bilinear, border padding),
    optional flip, then per-image normalisation, then brightness (offset) and contrast (scale).

    Brightness/contrast come after normalisation on purpose: before it they would be undone.
    """
    angle = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    shift = rng.uniform(-cfg.shift, cfg.shift, size=2) * x.shape[-1]
    zoom = 1.0 + rng.uniform(-cfg.zoom, cfg.zoom)
    b, c = rng.uniform(-cfg.brightness, cfg.brightness), 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    flip = cfg.hflip and rng.random() < 0.5
    # scipy's affine_transform, not torch grid_sample / MONAI Affine: on one small image those pay intra-op
    # thread start-up (10-30 ms per item on a busy 2-core CPU); scipy runs single-threaded in ~0.5 ms
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    mat = np.array([[cos, -sin], [sin, cos]])
    centre = (np.array(x.shape[-2:]) - 1) / 2.0
    offset = centre - mat @ centre - shift
    img = ndimage.affine_transform(x[0].numpy(), mat, offset=offset, order=1, mode="nearest")
    out = torch.from_numpy(img).unsqueeze(0)
    if flip:
        out = out.flip(-1)
    out = normalize(out, mode)
    scale = 4.0 if mode == "image" else 1.0  # offsets are in [0, 1] units; ~4 sd span the image range
    return out * c + b * scale
