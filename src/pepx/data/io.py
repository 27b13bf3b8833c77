"""Reading one image (PNG 8/16-bit, JPEG, any Pillow mode, DICOM) into one grayscale array.

`read_image(path)` reads a file; `read_image_bytes(data, name)` reads the same formats from bytes in memory
(an upload). Both share one decoder, so a file and its bytes give the same array.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from pepx.data.errors import ImageReadError, ImageTooLargeError

#: Largest image (width x height) read; bigger ones are refused as possible decompression bombs.
MAX_PIXELS = 60_000_000
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", *DICOM_SUFFIXES)


def is_dicom(path: str | Path) -> bool:
    """True when the file has a DICOM suffix or the `DICM` preamble marker."""
    p = Path(path)
    if p.suffix.lower() in DICOM_SUFFIXES:
        return True
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
    if not p.is_file():
        raise ImageReadError(p, "file not found" if not p.exists() else "not a regular file")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    if is_dicom(p):
        return _read_dicom(p, p, max_pixels)
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
    source = io.BytesIO(data)
    return _read_dicom(source, name, max_pixels) if dicom else _read_pillow(source, name, max_pixels)


def _read_pillow(source: Path | BinaryIO, p: str | Path, max_pixels: int) -> np.ndarray:
    """Decode `source` (a path or a binary file object) with Pillow; errors name `p`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageTooLargeError(
                        p,
                        f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                        "(possible decompression bomb)",
                    )
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


def _to_gray(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> float32 [0, 1] gray: 8-bit / 16-bit scaled by their range, colour by luminance."""
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if mode == "I":  # 16-bit PNG on some Pillow versions, or 32-bit int TIFF
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max(initial=0) <= 65535 and a.min(initial=0) >= 0 else None
        return (a / top if top else _minmax(a)).astype(np.float32)
    if mode == "F":
        return _minmax(np.asarray(im, dtype=np.float64)).astype(np.float32)
    if mode == "P":
        im = im.convert("RGBA")
    if mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode != "L":
        im = im.convert("L")  # ITU-R 601 luminance; alpha is dropped
    return np.asarray(im, dtype=np.float32) / 255.0


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _read_dicom(source: Path | BinaryIO, p: str | Path, max_pixels: int) -> np.ndarray:
    """Decode `source` (a path or a binary file object) with pydicom; errors name `p`."""
    try:
        ds = pydicom.dcmread(source)
    except InvalidDicomError as e:
        raise ImageReadError(p, f"not a valid DICOM file ({e})") from None
    except Exception as e:  # pydicom raises many types for broken files
        raise ImageReadError(p, f"unreadable DICOM ({type(e).__name__}: {e})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(p, "DICOM has no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > max_pixels:
        raise ImageTooLargeError(p, f"{cols}x{rows} pixels exceeds the limit of {max_pixels}")
    try:
        raw = ds.pixel_array
    except Exception as e:
        hint = (
            " (compressed transfer syntax: install pylibjpeg / pylibjpeg-libjpeg)"
            if "handler" in str(e).lower() or "plugin" in str(e).lower()
            else ""
        )
        raise ImageReadError(p, f"cannot decode DICOM pixels: {e}{hint}") from None
    if raw.ndim == 3 and raw.shape[-1] in (3, 4) and int(ds.get("SamplesPerPixel", 1)) > 1:
        raw = raw[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return _minmax(raw).astype(np.float32)
    if raw.ndim == 3:  # multi-frame: first frame
        raw = raw[0]
    arr = apply_modality_lut(raw, ds)
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    if has_voi:
        arr = apply_voi_lut(arr, ds)
    arr = np.asarray(arr, dtype=np.float64)
    bits = int(ds.get("BitsStored", 8))
    if "VOILUTSequence" in ds:
        lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        lo, hi = 0.0, float(2**lut_bits - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 1:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    else:
        lo, hi = 0.0, float(2**bits - 1)
    if (
        arr.min() < lo or arr.max() > hi
    ):  # a modality LUT moved the values (e.g. rescale slope): use their range
        out = _minmax(arr)
    else:
        out = (arr - lo) / (hi - lo)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        out = 1.0 - out
    return np.clip(out, 0.0, 1.0).astype(np.float32)
