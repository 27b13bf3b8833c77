"""`CXRDataModule`: train and eval DataLoaders over one split, with rank-aware samplers of our own."""

from __future__ import annotations

from typing import Any

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader

from pepx.data import CXRDataset
from pepx.training.config import TrainConfig
from pepx.training.sampler import EpochDataset, EpochSampler, ShardSampler


def make_dataset(frame: pd.DataFrame, config: TrainConfig, augment: bool = False) -> CXRDataset:
    """The `pepx.data.CXRDataset` for `frame` at the config's size and cache."""
    return CXRDataset(frame.reset_index(drop=True), image_size=config.image_size, augment=augment,
                      seed=config.seed, cache_dir=config.cache_dir)


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

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.datasets["train"] = make_dataset(self.frames["train"], self.config, augment=self.config.augment)
        for name in self.eval_names:
            self.datasets[name] = make_dataset(self.frames[name], self.config)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        dataset = self.datasets["train"]
        labels = torch.as_tensor(dataset.labels)
        sampler = EpochSampler(labels, self.config.seed, balanced=self.config.balanced_sampling, rank=rank,
                               world_size=world)
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
