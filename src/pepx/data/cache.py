"""On-disk cache of preprocessed images: decode + crop + resize once, then read uint8 arrays.

Layout under `<root>/images/<settings-hash>/`:
- `entries/<key>.npy`: one preprocessed uint8 [S, S] image; `key` hashes the file's absolute path, size and
  modification time (a changed file gets a new key, so its old entry is never read);
- `packs/<hash of keys>.u8`: the entries of one data frame stacked in a single memory-mapped array, so a
  data loader reads one contiguous slice per item.
The settings hash covers every preprocessing setting (and the pepx cache version): changing a setting reads
and writes a different folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pepx.fileio import atomic_path

CACHE_VERSION = 1


def cache_root() -> Path:
    """`$PEPX_CACHE`, else `~/.cache/pepx`."""
    env = os.environ.get("PEPX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pepx"


def file_key(path: str | Path) -> str:
    """Hash of a file's absolute path, size and mtime (ns): changes whenever the file is rewritten."""
    st = os.stat(path)
    raw = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(raw.encode()).hexdigest()


class ImageCache:
    """The cache folder of one preprocessing setting (`settings_id` from `Preprocess.cache_id()`)."""

    def __init__(self, root: str | Path | None, settings_id: str, size: int) -> None:
        self.dir = (
            Path(root if root is not None else cache_root() / "images") / f"v{CACHE_VERSION}-{settings_id}"
        )
        self.size = size

    def entry_path(self, key: str) -> Path:
        """Where one image's entry lives."""
        return self.dir / "entries" / key[:2] / f"{key}.npy"

    def ensure(self, paths: Sequence[str], build: Callable[[str], np.ndarray], workers: int = 2) -> list[str]:
        """Keys of `paths`, building (with `build(path) -> uint8 [S, S]`) the entries that are missing."""
        keys = [file_key(p) for p in paths]
        todo = [(p, k) for p, k in zip(paths, keys, strict=True) if not self.entry_path(k).is_file()]

        def one(item: tuple[str, str]) -> None:
            p, k = item
            arr = build(p)
            with atomic_path(self.entry_path(k)) as tmp:
                _save_npy(tmp, arr)

        if todo:
            # Pillow releases the GIL while decoding and resizing, so threads overlap on several cores
            with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
                list(ex.map(one, todo))
        return keys

    def pack(self, keys: Sequence[str]) -> Path:
        """A memmap-able uint8 [N, S, S] file holding the entries of `keys` in order (built once)."""
        digest = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:20]
        path = self.dir / "packs" / f"{digest}_{len(keys)}x{self.size}.u8"
        if not path.is_file():
            with atomic_path(path) as tmp:
                mm = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=np.uint8, shape=(len(keys), self.size, self.size)
                )
                for i, k in enumerate(keys):
                    mm[i] = np.load(self.entry_path(k))
                mm.flush()
                del mm
        return path


def _save_npy(tmp: str | Path, arr: np.ndarray) -> None:
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
