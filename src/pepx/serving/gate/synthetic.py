"""Synthetic images that are not frontal chest X-rays, made from real films (or from nothing): what the gate
is trained to reject and what `pepx gate evaluate` measures it on.

Every function takes a grayscale film float [H, W] in [0, 1] (as `pepx.data.read_image` returns) and a numpy
`Generator`, and returns a new image in [0, 1]; all randomness comes from the generator, so a seed repeats
the set. `EVAL_KINDS` are the kinds the issue names (each with fixed, narrow settings); `TRAIN_KINDS` adds
broader variants, so the gate does not learn only the exact corruptions it is scored on. `framed` goes the
other way: a frontal film as another hospital might have framed and stored it (shifted, zoomed out on a
border, tilted, then `pepx.data.acquisition`'s exposure, blur, noise, JPEG, markers) - still a frontal film,
so the gate learns that a film with borders or an odd look is not a cropped or rotated image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from pepx.data.acquisition import acquire

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def inverted(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Negative of the film (bones dark, lungs bright), as a DICOM read with the wrong photometric sense."""
    return 1.0 - img


def rotated(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turned 90 degrees, clockwise or anticlockwise."""
    return np.ascontiguousarray(np.rot90(img, k=int(rng.choice([1, 3]))))


def upside_down(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turned 180 degrees."""
    return np.ascontiguousarray(img[::-1, ::-1])


def blank(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One grey level everywhere (black, white or between), at the film's size."""
    return np.full(img.shape, float(rng.choice([0.0, 1.0, rng.uniform(0.05, 0.95)])), dtype=np.float32)


def noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Independent uniform noise at the film's size."""
    return rng.random(img.shape, dtype=np.float32)


def smooth_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-blurred noise (blobs of 2-40 px), at the film's size."""
    raw = Image.fromarray((rng.random(img.shape) * 255).astype(np.uint8))
    out = np.asarray(raw.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 40)))), dtype=np.float32)
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo) if hi > lo else out / 255.0


def cropped(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small square piece of the film (15-25 % of its shorter side) at a random place."""
    return _crop(img, rng, 0.15, 0.25)


def cropped_wide(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A piece of 10-35 % of the shorter side."""
    return _crop(img, rng, 0.10, 0.35)


def _crop(img: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    h, w = img.shape
    side = max(4, int(round(min(h, w) * rng.uniform(lo, hi))))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return np.ascontiguousarray(img[y : y + side, x : x + side])


#: The longest side `framed` works at: acquisition's ranges are in pixels near the network's input size.
FRAMED_SIDE = 224


def framed(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A frontal film as another site might frame it: tilted up to 10 degrees, zoomed out to 90-100 % on a
    black, white or grey field, shifted up to 6 % of the side, then an acquisition change
    (`pepx.data.acquisition.acquire`); at most `FRAMED_SIDE` px on its longer side."""
    im = Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if max(im.size) > FRAMED_SIDE:
        scale = FRAMED_SIDE / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    w, h = im.size
    fill = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    zoom = rng.uniform(0.9, 1.0)
    dx, dy = rng.uniform(-0.06, 0.06, size=2) * np.array([w, h])
    im = im.rotate(float(rng.uniform(-10, 10)), resample=Image.BILINEAR, fillcolor=fill)
    small = im.resize((max(1, int(w * zoom)), max(1, int(h * zoom))), Image.BILINEAR)
    canvas = Image.new("L", (w, h), fill)
    canvas.paste(small, (int((w - small.width) / 2 + dx), int((h - small.height) / 2 + dy)))
    return acquire(np.asarray(canvas), rng).astype(np.float32) / 255.0


#: The synthetic out-of-distribution kinds `pepx gate evaluate` reports.
EVAL_KINDS: dict[str, Corruption] = {"inverted": inverted, "rotated": rotated, "blank": blank,
                                     "noise": noise, "cropped": cropped}
#: What the gate's classifier is fitted on: the same kinds, plus broader variants of them.
TRAIN_KINDS: dict[str, Corruption] = {"inverted": inverted, "rotated": rotated, "upside_down": upside_down,
                                      "blank": blank, "noise": noise, "smooth_noise": smooth_noise,
                                      "cropped": cropped_wide}


def corrupt(img: np.ndarray, kind: str, rng: np.random.Generator,
            kinds: dict[str, Corruption] | None = None) -> np.ndarray:
    """`img` corrupted as `kind` (a key of `kinds`, default `EVAL_KINDS`), float32 in [0, 1]."""
    table = EVAL_KINDS if kinds is None else kinds
    return np.clip(table[kind](img, rng), 0.0, 1.0).astype(np.float32, copy=False)


__all__ = ["EVAL_KINDS", "TRAIN_KINDS", "corrupt", "framed"]
