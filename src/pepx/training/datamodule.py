"""`CXRDataModule`: train and eval DataLoaders over one split, with rank-aware samplers of our own."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader

from pepx.data import CXRDataset
from pepx.data.acquisition import Acquisition
from pepx.errors import ConfigError
from pepx.training.config import TrainConfig
from pepx.training.sampler import EpochDataset, EpochSampler, ShardSampler

log = logging.getLogger("pepx.training")


def make_dataset(frame: pd.DataFrame, config: TrainConfig, augment: bool = False,
                 domains: pd.Series | None = None) -> CXRDataset:
    """The `pepx.data.CXRDataset` for `frame` at the config's size, preprocessing and cache; ``augment``
    (training) also turns on the config's acquisition augmentation; ``domains``: see `domain_codes`."""
    acquisition = Acquisition() if augment and config.augment_acquisition else None
    return CXRDataset(frame.reset_index(drop=True), image_size=config.image_size,
                      augment=augment and config.augment, seed=config.seed, cache_dir=config.cache_dir,
                      preprocess=config.preprocess_settings(), acquisition=acquisition, domains=domains)


def needs_domains(config: TrainConfig) -> bool:
    """Whether training needs each image's domain (source): source-balanced or domain-adversarial."""
    return config.balanced_sampling == "source-class" or config.domain_adversary != "none"


def domain_codes(frame: pd.DataFrame, column: str) -> tuple[pd.Series, list[str]]:
    """Each row's index among the sorted distinct values of ``column``, and those values.

    Raises `ConfigError` when the split has no such column or a row lacks a value: source-balanced and
    domain-adversarial training need to know every training image's source.
    """
    what = "balanced_sampling=source-class / domain_adversary"
    if column not in frame.columns:
        raise ConfigError(f"{what} need a {column!r} column in the split; it has {', '.join(frame.columns)}")
    values = frame[column]
    if values.isna().any():
        raise ConfigError(f"{what}: {int(values.isna().sum())} training rows have no {column!r} "
                          f"(e.g. {frame.loc[values.isna(), 'path'].iloc[0]})")
    names = sorted(values.astype(str).unique())
    return values.astype(str).map({n: i for i, n in enumerate(names)}).reset_index(drop=True), names


def loader_kwargs(num_workers: int) -> dict[str, Any]:
    """DataLoader settings shared by training, evaluation and `predict`."""
    return {"num_workers": num_workers, "persistent_workers": num_workers > 0,
            "pin_memory": torch.cuda.is_available()}


class CXRDataModule(L.LightningDataModule):
    """Loaders for the `train` rows and each eval split of `split` (a manifest frame with a `split` column).

    The Trainer runs with `use_distributed_sampler=False`: training shards with `EpochSampler` (order a
    function of seed and epoch), evaluation with `ShardSampler` (no padding: DDP scores every image once).
    """

    def __init__(self, config: TrainConfig, split: pd.DataFrame) -> None:
        super().__init__()
        self.config = config
        self.frames = {name: split[split["split"] == name] for name in ("train", "val", "test")}
        self.eval_names = [s for s in config.eval_splits if len(self.frames[s])]
        self.datasets: dict[str, Any] = {}
        self.domains, self.domain_names = (domain_codes(self.frames["train"], config.domain_column)
                                           if needs_domains(config) else (None, []))

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        start = time.perf_counter()
        adversarial = self.config.domain_adversary != "none"
        self.datasets["train"] = make_dataset(self.frames["train"], self.config, augment=True,
                                              domains=self.domains if adversarial else None)
        for name in self.eval_names:
            self.datasets[name] = make_dataset(self.frames[name], self.config)
        if self._rank_world()[0] != 0:  # one line per run, not one per DDP process
            return
        counts = ", ".join(f"{len(d)} {name}" for name, d in self.datasets.items())
        log.info("data: %s images at %d px ready in %.1f s (cache %s)", counts, self.config.image_size,
                 time.perf_counter() - start, self.datasets["train"].cache.dir)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        dataset = self.datasets["train"]
        labels = torch.as_tensor(dataset.labels)
        sampler = EpochSampler(labels, self.config.seed, balance=self.config.balanced_sampling, rank=rank,
                               world_size=world,
                               groups=None if self.domains is None else torch.tensor(self.domains.to_numpy()))
        # BatchNorm cannot train on a last batch of one image; drop it only in that case.
        drop_last = len(sampler) % self.config.batch_size == 1
        return DataLoader(EpochDataset(dataset), batch_size=self.config.batch_size, sampler=sampler,
                          drop_last=drop_last, **loader_kwargs(self.config.num_workers))

    def val_dataloader(self) -> list[DataLoader]:
        rank, world = self._rank_world()
        batch = self.config.eval_batch_size or 2 * self.config.batch_size
        return [DataLoader(self.datasets[name], batch_size=batch,
                           sampler=ShardSampler(len(self.datasets[name]), rank, world),
                           **loader_kwargs(self.config.num_workers))
                for name in self.eval_names]
