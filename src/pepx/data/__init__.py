"""pepx.data: read chest X-ray data sets into one manifest, split them, cache and serve the images.

Public API (contract in docs/interfaces.md):
`load_source`, `SourceResult`, `Problem`, `read_image`, `read_image_bytes`, `ImageReadError`,
`balanced_split`, `save_split`, `load_split`, `CXRDataset`, `Preprocess`, `Augment`, `leak_check`,
`confound_report`, `cache_root`.
"""

from __future__ import annotations

from pepx.data.audit import ConfoundReport, LeakReport, confound_report, leak_check
from pepx.data.cache import cache_root
from pepx.data.dataset import CXRDataset
from pepx.data.errors import DataError, ImageReadError, ImageTooLargeError, SourceError, SplitError
from pepx.data.io import read_image, read_image_bytes
from pepx.data.manifest import MANIFEST_COLUMNS, Problem, SourceResult
from pepx.data.sources import load_source
from pepx.data.split import balanced_split, load_split, save_split
from pepx.data.transforms import Augment, Preprocess

__all__ = [
    "MANIFEST_COLUMNS",
    "Augment",
    "CXRDataset",
    "ConfoundReport",
    "LeakReport",
    "confound_report",
    "leak_check",
    "DataError",
    "ImageReadError",
    "ImageTooLargeError",
    "Preprocess",
    "Problem",
    "SourceError",
    "SourceResult",
    "SplitError",
    "balanced_split",
    "cache_root",
    "load_source",
    "load_split",
    "read_image",
    "read_image_bytes",
    "save_split",
]
