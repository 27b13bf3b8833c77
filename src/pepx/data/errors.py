"""Error types of `pepx.data`."""

from __future__ import annotations

from pathlib import Path

from pepx.errors import PepxError


class DataError(PepxError):
    """Base class of every error `pepx.data` raises on purpose."""


class ImageReadError(DataError):
    """One image file could not be read; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTooLargeError(ImageReadError):
    """An image with more pixels than the reader accepts (a possible decompression bomb)."""


class SourceError(DataError):
    """A data source (spec, label file, manifest) cannot be used as a whole."""


class SplitError(DataError):
    """A split cannot be drawn as asked (too few images or patients in a class)."""
