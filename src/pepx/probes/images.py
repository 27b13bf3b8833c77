"""The films the probes look at, the changes the probes make to them, and the network input made from them
exactly as `pepx.data.CXRDataset` makes it (without augmentation).

The invariance probe's changes act on the stored film at its own resolution, as another hospital might have
processed and stored it (cxr-real's `rsna` films were equalised at 1024 px, then downsampled); pepx then reads
the changed film as it reads every film (centre square, resize to the model's side, the run's own
``equalize``, per-image normalisation):

- ``hist``: global histogram equalisation (`pepx.data.transforms.equalize`, the look of cxr-real's `rsna`);
- ``jpeg``: JPEG re-compression at ``jpeg_quality`` (`pepx.data.acquisition`'s JPEG change);
- ``resize``: down until the shorter side is ``resize`` times the model's input side, then back up (bilinear):
  a film stored at low resolution (cxr-real's `crd` films were 224 px squares, upsampled).

Lungs blanked (Maguolo & Nanni 2021): the rectangle ``lung_box`` of the network's input (top, bottom, left,
right as fractions of the side: rows 10-85 %, columns 10-90 % by default, which covers both lung fields of a
centred frontal film) is set to the film's mean, i.e. 0 after per-image normalisation; what is left is the
film's border: shoulders, neck, abdomen, collimation, markers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pepx.data import CXRDataset, Preprocess, read_image
from pepx.data.acquisition import Acquisition, acquire
from pepx.data.transforms import crop_resize, equalize, normalize_array

#: A change of a stored film: (uint8 [H, W], the model's input side) -> uint8 [H, W].
Change = Callable[[np.ndarray, int], np.ndarray]


def films(frame: pd.DataFrame, size: int, settings: Preprocess, cache_dir: str | None = None) -> np.ndarray:
    """uint8 ``[N, size, size]``: the cached film of every row (decoded once into pepx's image cache)."""
    dataset = CXRDataset(frame, image_size=size, preprocess=settings, cache_dir=cache_dir)
    return np.asarray(dataset.images)


def inputs(stack: np.ndarray, settings: Preprocess) -> torch.Tensor:
    """float32 ``[N, 1, S, S]`` network input of uint8 films: ``settings.equalize``, then normalisation (as
    `CXRDataset.__getitem__` without augmentation)."""
    out = np.empty(stack.shape, dtype=np.float32)
    for i, img in enumerate(stack):
        img = equalize(img) if settings.equalize == "hist" else img
        out[i] = normalize_array(img.astype(np.float32) / 255.0, settings.normalize)
    return torch.from_numpy(out).unsqueeze(1)


def _only(op: str, **ranges: object) -> Acquisition:
    """An `Acquisition` that always applies the one change ``p_<op>`` with fixed ``ranges``."""
    probs = {f.name: 0.0 for f in fields(Acquisition) if f.name.startswith("p_")}
    return Acquisition(**{**probs, f"p_{op}": 1.0, **ranges})  # type: ignore[arg-type]


def _resized(img: np.ndarray, side: float) -> np.ndarray:
    h, w = img.shape
    scale = min(1.0, side / min(h, w))
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    pil = Image.fromarray(img).resize(small, Image.BILINEAR).resize((w, h), Image.BILINEAR)
    return np.asarray(pil, dtype=np.uint8)


def changes(jpeg_quality: int = 50, resize: float = 0.5) -> dict[str, Change]:
    """The invariance probe's changes by name."""
    jpeg = _only("jpeg", jpeg_quality=(jpeg_quality, jpeg_quality))
    # fixed ranges: the generator only decides "apply" (always), so every film gets the same change
    return {"hist": lambda img, size: equalize(img),
            "jpeg": lambda img, size: acquire(img, np.random.default_rng(0), jpeg),
            "resize": lambda img, size: _resized(img, resize * size)}


def changed_films(frame: pd.DataFrame, size: int, settings: Preprocess, change: Change) -> np.ndarray:
    """uint8 ``[N, size, size]``: every row's film, read as 8 bit, changed, then cropped and resized as pepx
    caches it."""
    out = np.empty((len(frame), size, size), dtype=np.uint8)
    for i, path in enumerate(frame["path"]):
        stored = (read_image(str(path)) * 255.0 + 0.5).astype(np.uint8)
        out[i] = crop_resize(change(stored, size) / 255.0, size, settings.top_crop, settings.square)
    return out


def blank_lungs(x: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """A copy of network inputs ``[N, 1, S, S]`` whose rectangle ``box`` (top, bottom, left, right as
    fractions of the side) is set to each film's mean."""
    side_h, side_w = x.shape[-2:]
    top, bottom = round(box[0] * side_h), round(box[1] * side_h)
    left, right = round(box[2] * side_w), round(box[3] * side_w)
    out = x.clone()
    mean = x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
    out[..., top:bottom, left:right] = mean[..., top:bottom, left:right]
    return out
