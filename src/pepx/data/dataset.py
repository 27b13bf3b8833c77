"""`CXRDataset`: a manifest frame as a torch Dataset of (image [1, S, S] float32, label int)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pepx import CLASSES
from pepx.data.acquisition import Acquisition, acquire
from pepx.data.cache import ImageCache
from pepx.data.errors import DataError
from pepx.data.transforms import (
    Augment,
    Preprocess,
    augment,
    equalize,
    item_generator,
    load_preprocessed,
    normalize_array,
)

log = logging.getLogger("pepx.data")


class CXRDataset(Dataset):
    """Images of `frame` (a manifest or split), preprocessed once into the on-disk cache.

    Building the dataset decodes only images not yet cached (a changed file or setting is a miss);
    items are then read from one memory-mapped uint8 array. With `augment=True` (or `acquisition`) each item's
    augmentation is a pure function of (seed, epoch, index): call `set_epoch(e)` each epoch, and the run
    repeats exactly with any number of DataLoader workers and after a resume. An item is
    ``(image, label)``, or ``(image, label, domain)`` when ``domains`` is given (domain-adversarial training).

    Args:
        frame: a manifest or split frame (`path`, `label` among its columns); labels must be pepx classes.
        image_size: side of the square images served, in pixels.
        augment: apply `augment_config`'s random affine and intensity changes (training).
        seed: seed of the augmentation draws (with the epoch and the item's index).
        cache_dir: folder of the decoded-image cache (default ``$PEPX_CACHE/images``).
        preprocess: a `Preprocess` or a dict of its fields (top crop, square crop, normalisation).
        augment_config: ranges of the augmentation (default `Augment()`).
        workers: threads decoding images not yet in the cache.
        acquisition: also draw acquisition changes (`pepx.data.acquisition`: gamma, blur, noise, JPEG,
            resampling, crop, borders, burnt-in text) before equalisation; None = off.
        domains: one integer per row (e.g. its source's index), returned as a third item element.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        image_size: int = 224,
        augment: bool = False,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        preprocess: Preprocess | dict[str, Any] | None = None,
        augment_config: Augment | None = None,
        workers: int = 2,
        acquisition: Acquisition | None = None,
        domains: Any = None,
    ) -> None:
        self.frame = frame.reset_index(drop=True)
        unknown = sorted(set(self.frame["label"]) - set(CLASSES))
        if unknown:
            raise DataError(f"labels {unknown} are not pepx classes {CLASSES}")
        self.image_size = int(image_size)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.settings = Preprocess.from_any(preprocess)
        self.augment_config = augment_config or Augment()
        self.acquisition = acquisition
        self.domains = None if domains is None else torch.tensor(np.asarray(domains), dtype=torch.long)
        if self.domains is not None and len(self.domains) != len(self.frame):
            raise ValueError(f"domains: {len(self.domains)} values for {len(self.frame)} rows")
        self.labels = torch.tensor([CLASSES.index(x) for x in self.frame["label"]], dtype=torch.long)
        self.cache = ImageCache(cache_dir, self.settings.cache_id(self.image_size), self.image_size)
        t0 = time.perf_counter()
        paths = [str(p) for p in self.frame["path"]]
        keys = self.cache.ensure(paths, self._build, workers=workers)
        self.pack_path = self.cache.pack(keys)
        log.debug(  # once per run, for all splits together: `CXRDataModule.setup`
            "CXRDataset: %d images at %d px ready in %.1f s (cache %s)",
            len(paths),
            self.image_size,
            time.perf_counter() - t0,
            self.cache.dir,
        )
        self._arr: np.ndarray | None = None

    def _build(self, path: str) -> np.ndarray:
        return load_preprocessed(path, self.image_size, self.settings)

    @property
    def images(self) -> np.ndarray:
        """The uint8 [N, S, S] memory map (opened lazily, once per worker process)."""
        if self._arr is None:
            self._arr = np.load(self.pack_path, mmap_mode="r")
        return self._arr

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arr"] = None  # each worker opens its own map
        return state

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of `epoch`."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        img = np.asarray(self.images[index])
        rng = item_generator(self.seed, self.epoch, index) if self.augment or self.acquisition else None
        if self.acquisition is not None:
            img = acquire(img, rng, self.acquisition)
        if self.settings.equalize == "hist":
            img = equalize(img)
        img = img.astype(np.float32)
        if self.augment:
            x = torch.from_numpy(img / 255.0).unsqueeze(0)
            x = augment(x, rng, self.augment_config, self.settings.normalize)
        else:  # numpy: a few µs cheaper per item than the same torch ops on one small image
            x = torch.from_numpy(normalize_array(img / 255.0, self.settings.normalize)).unsqueeze(0)
        if self.domains is not None:
            return x, int(self.labels[index]), int(self.domains[index])
        return x, int(self.labels[index])
