"""Reading one image (PNG 8/16-bit, JPEG, any Pillow mode, DICOM) into one grayscale array.

`read_image(path)` reads a file; `read_image_bytes(data, name)` reads the same formats from bytes in memory
(an upload). Both share one decoder, so a file and its bytes give the same array, and one pixel budget
(`pepx.data.budget`), checked from the header before anything is decompressed. DICOM: `pepx.data.dicom`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, UnidentifiedImageError

from pepx.data.budget import MAX_PIXELS, check_budget, minmax
from pepx.data.dicom import read_dicom
from pepx.data.errors import ImageReadError, ImageTooLargeError
from pepx.fileio import file_problem

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", *DICOM_SUFFIXES)


def is_dicom(path: str | Path) -> bool:
    """True when the file has a DICOM suffix or the `DICM` preamble marker (only regular files are opened:
    opening a FIFO would block)."""
    p = Path(path)
    if p.suffix.lower() in DICOM_SUFFIXES:
        return True
    if file_problem(p) is not None:
        return False
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return has_dicom_marker(head)


def has_dicom_marker(head: bytes) -> bool:
    """True when `head` (a file's first bytes) has DICOM's `DICM` marker after the 128-byte preamble."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one image as a float32 2-D array in [0, 1] (0 = black, air dark as on film).

    Raises `ImageReadError` (with the file and the reason) for any file that is not a readable image.
    """
    p = Path(path)
    problem = file_problem(p)
    if problem is not None:
        raise ImageReadError(p, problem)
    if p.stat().st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    if is_dicom(p):
        try:
            data = p.read_bytes()
        except OSError as e:
            raise ImageReadError(p, f"cannot read the file ({e.strerror or e})") from None
        return read_dicom(data, p, max_pixels)
    return _read_pillow(p, p, max_pixels)


def read_image_bytes(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS,
                     dicom: bool | None = None) -> np.ndarray:
    """`read_image` for the bytes of an image file held in memory (nothing is written to disk).

    `name` names the image in errors; `dicom`: decode as DICOM (True), with Pillow (False), or decide as
    `read_image` does, by `name`'s suffix or the `DICM` marker (None). Raises `ImageReadError`, and its
    subclass `ImageTooLargeError` for images over `max_pixels` (possible decompression bombs).
    """
    if not data:
        raise ImageReadError(name, "empty file (0 bytes)")
    if dicom is None:
        dicom = Path(name).suffix.lower() in DICOM_SUFFIXES or has_dicom_marker(data[:132])
    return read_dicom(data, name, max_pixels) if dicom else _read_pillow(io.BytesIO(data), name, max_pixels)


def _read_pillow(source: Path | BinaryIO, p: str | Path, max_pixels: int) -> np.ndarray:
    """Decode `source` (a path or a binary file object) with Pillow; errors name `p`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                w, h = im.size
                check_budget(p, w, h, max_pixels, bytes_per_sample=_bytes_per_pixel(im.mode))
                if w < 2 or h < 2:
                    raise ImageReadError(p, f"image too small ({w}x{h})")
                im.load()
                arr = _to_gray(im)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(p, "not an image Pillow can identify") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(p, f"decompression bomb: {e}") from None
    except Exception as e:  # decoders raise OSError, SyntaxError, zlib.error, ValueError...: all mean corrupt
        raise ImageReadError(p, f"corrupt or truncated image ({type(e).__name__}: {e})") from None
    if not np.isfinite(arr).all():
        raise ImageReadError(p, "image contains NaN or infinite values")
    return arr


def _bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow decodes per pixel of `mode` (only the first frame is ever decoded)."""
    try:
        info = ImageMode.getmode(mode)
        return len(info.bands) * int(info.typestr[-1])
    except (KeyError, ValueError):
        return 4


def _to_gray(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> float32 [0, 1] gray: 8-bit / 16-bit scaled by their range, colour by luminance.
    `im` is at its first frame (as opened: `n_frames` would decode every frame of an animation to count)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if mode == "I":  # 16-bit PNG on some Pillow versions, or 32-bit int TIFF
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max(initial=0) <= 65535 and a.min(initial=0) >= 0 else None
        return (a / top if top else minmax(a)).astype(np.float32)
    if mode == "F":
        return minmax(np.asarray(im, dtype=np.float64)).astype(np.float32)
    if mode == "P":
        im = im.convert("RGBA")
    if mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode != "L":
        im = im.convert("L")  # ITU-R 601 luminance; alpha is dropped
    return np.asarray(im, dtype=np.float32) / 255.0


__all__ = ["DICOM_SUFFIXES", "IMAGE_SUFFIXES", "MAX_PIXELS", "has_dicom_marker", "is_dicom", "read_image",
           "read_image_bytes"]
