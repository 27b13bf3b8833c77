"""The pixel budget every image reader keeps to (PNG, JPEG and others through Pillow; DICOM through pydicom).

One image may have at most `MAX_PIXELS` pixels (width x height, one frame), and what the reader would decode
- width x height x frames x samples x bytes per sample - may take at most `BYTES_PER_PIXEL` x `MAX_PIXELS`
bytes: the size of the float32 array a `MAX_PIXELS` image becomes anyway. Both are checked from the header,
before any pixel is decompressed, so a small file that would inflate to gigabytes (a decompression bomb) is
refused at once with an `ImageTooLargeError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pepx.data.errors import ImageTooLargeError

#: Largest image (width x height) read; bigger ones are refused as possible decompression bombs.
MAX_PIXELS = 60_000_000
#: Decoded bytes allowed per pixel of the budget: 4, a float32 grey image of MAX_PIXELS pixels.
BYTES_PER_PIXEL = 4


def check_budget(name: str | Path, width: int, height: int, max_pixels: int = MAX_PIXELS, *, frames: int = 1,
                 samples: int = 1, bytes_per_sample: int = 1) -> None:
    """Raise `ImageTooLargeError` naming `name` when the image is over `max_pixels` pixels, or would decode
    to more than `BYTES_PER_PIXEL * max_pixels` bytes."""
    pixels = width * height
    if pixels > max_pixels:
        raise ImageTooLargeError(name, f"{width}x{height} = {pixels} pixels exceeds the limit of "
                                       f"{max_pixels} (possible decompression bomb)")
    decoded = pixels * frames * samples * bytes_per_sample
    if decoded > BYTES_PER_PIXEL * max_pixels:
        raise ImageTooLargeError(
            name, f"{width}x{height} x {frames} frames x {samples} samples x {bytes_per_sample} bytes = "
                  f"{decoded / 1e6:.0f} MB decoded exceeds the pixel budget of "
                  f"{BYTES_PER_PIXEL * max_pixels / 1e6:.0f} MB (possible decompression bomb)")


def minmax(a: np.ndarray) -> np.ndarray:
    """`a` scaled to [0, 1] by its own range (zeros when constant)."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


__all__ = ["BYTES_PER_PIXEL", "MAX_PIXELS", "check_budget", "minmax"]
