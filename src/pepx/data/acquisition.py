"""Acquisition augmentation: make a film look as if another hospital had taken, processed and stored it.

Issue 15's mitigation (d). Networks trained on multi-source chest X-ray sets learn each source's look
(exposure curve, sharpness, noise, JPEG history, resolution, collimation borders, burnt-in markers) because it
goes with the label. Each training view here draws a few such changes at random, so the look stops predicting
the class. Every op works on the cached uint8 film before histogram equalisation and the geometric
augmentation, and draws from the item's generator (a pure function of seed, epoch and index), so a resumed
run repeats exactly. Hand-written on Pillow / SciPy: the few CXR-specific ops (burnt-in text, border erasing)
exist in no installed library, and MONAI's array transforms pay torch thread start-up on 112-px images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

#: Words burnt into films by scanners and technologists.
MARKERS: tuple[str, ...] = ("L", "R", "AP", "PA", "PORTABLE", "SUPINE", "ERECT", "1", "2", "x", "12:04")


@dataclass(frozen=True)
class Acquisition:
    """Probability and range of each acquisition change (ranges drawn uniformly)."""

    p_gamma: float = 0.5
    gamma: tuple[float, float] = (0.6, 1.6)  # exposure / detector curve (log-uniform)
    p_window: float = 0.3
    window: float = 0.15  # clip up to this fraction off either end of the grey range, then stretch
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)  # pixels at the network's size
    p_noise: float = 0.3
    noise_sd: tuple[float, float] = (0.005, 0.04)  # in [0, 1] units
    p_jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (20, 90)
    p_resample: float = 0.3
    resample: tuple[float, float] = (0.35, 0.8)  # down to this fraction of the side, then back up
    p_crop: float = 0.3
    crop: tuple[float, float] = (0.75, 1.0)  # keep this fraction of the side (scale jitter), resized back
    p_border: float = 0.3
    border: tuple[float, float] = (0.03, 0.12)  # fraction of the side erased on one to three edges
    p_text: float = 0.3


def _gamma(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    lo, hi = np.log(cfg.gamma[0]), np.log(cfg.gamma[1])
    return np.power(x, np.exp(rng.uniform(lo, hi)))


def _window(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    lo, hi = rng.uniform(0, cfg.window), 1.0 - rng.uniform(0, cfg.window)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _blur(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma=rng.uniform(*cfg.blur_sigma), mode="nearest")


def _noise(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    return x + rng.normal(0.0, rng.uniform(*cfg.noise_sd), size=x.shape)


def _pil_op(x: np.ndarray, op) -> np.ndarray:
    img = Image.fromarray(np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(op(img), dtype=np.float64) / 255.0


def _jpeg(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))

    def op(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("L")
    return _pil_op(x, op)


def _resample(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    side = x.shape[0]
    small = max(8, int(round(side * rng.uniform(*cfg.resample))))
    return _pil_op(x, lambda img: img.resize((small, small), Image.BILINEAR).resize((side, side),
                                                                                       Image.BILINEAR))


def _crop(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    side = x.shape[0]
    keep = max(8, int(round(side * rng.uniform(*cfg.crop))))
    y0, x0 = (int(rng.integers(0, side - keep + 1)) for _ in range(2))
    box = (x0, y0, x0 + keep, y0 + keep)
    return _pil_op(x, lambda img: img.crop(box).resize((side, side), Image.BILINEAR))


def _border(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    out, side = x.copy(), x.shape[0]
    value = rng.choice([0.0, 1.0, rng.uniform(0, 1)])
    for edge in rng.choice(4, size=int(rng.integers(1, 4)), replace=False):
        w = max(1, int(round(side * rng.uniform(*cfg.border))))
        region = {0: np.s_[:w, :], 1: np.s_[-w:, :], 2: np.s_[:, :w], 3: np.s_[:, -w:]}[int(edge)]
        out[region] = value
    return out


def _text(x: np.ndarray, rng: np.random.Generator, cfg: Acquisition) -> np.ndarray:
    side = x.shape[0]
    word = str(rng.choice(MARKERS))
    fill = int(rng.choice([0, 255, int(rng.integers(160, 256))]))
    size = max(6, int(side * rng.uniform(0.06, 0.14)))
    corner = (int(rng.integers(0, max(1, side // 4))), int(rng.integers(0, max(1, side // 4))))
    flip = rng.random() < 0.5  # top-left or top-right corner region

    def op(img: Image.Image) -> Image.Image:
        draw = ImageDraw.Draw(img)
        xy = (side - corner[0] - size * len(word) // 2, corner[1]) if flip else corner
        draw.text(xy, word, fill=fill, font_size=size)
        return img
    return _pil_op(x, op)


#: (probability field, op), in the order a film meets them: detector and processing, storage, framing, marks.
_OPS = (("p_gamma", _gamma), ("p_window", _window), ("p_blur", _blur), ("p_noise", _noise),
        ("p_resample", _resample), ("p_jpeg", _jpeg), ("p_crop", _crop), ("p_border", _border),
        ("p_text", _text))


def acquire(img: np.ndarray, rng: np.random.Generator, cfg: Acquisition = Acquisition()) -> np.ndarray:
    """A uint8 [S, S] film as another site might have stored it (uint8 [S, S]); each change of ``cfg``
    applies with its probability."""
    x = img.astype(np.float64) / 255.0
    for prob, op in _OPS:
        if rng.random() < getattr(cfg, prob):
            x = np.clip(op(x, rng, cfg), 0.0, 1.0)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
