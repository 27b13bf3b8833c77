"""Samplers whose order is a pure function of (seed, epoch, rank), so runs and resumed runs repeat exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Training order for one process: a shuffled or class-balanced draw from (seed, epoch), sharded by rank.

    Yields `(epoch, index)` pairs so that `EpochDataset` tells augmentation the epoch even inside persistent
    workers. Every rank draws the same global order, padded to a multiple of `world_size`, and takes every
    `world_size`-th item, like `DistributedSampler`. Lightning calls `set_epoch` before each epoch.
    """

    def __init__(self, labels: torch.Tensor, seed: int, balanced: bool = False, rank: int = 0,
                 world_size: int = 1) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.seed, self.balanced = int(seed), balanced
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        n = len(self.labels)
        self.num_samples = -(-n // world_size)  # ceil

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_order(self) -> torch.Tensor:
        """All ranks' indices for this epoch, before sharding."""
        n = len(self.labels)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.balanced:
            counts = torch.bincount(self.labels).double()
            weights = 1.0 / counts[self.labels]
            order = torch.multinomial(weights, n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen)
        pad = self.num_samples * self.world_size - n
        if pad:
            order = torch.cat([order, order[:pad]])
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        shard = self.global_order()[self.rank::self.world_size]
        return iter([(self.epoch, int(i)) for i in shard])

    def __len__(self) -> int:
        return self.num_samples


class ShardSampler(Sampler[int]):
    """Evaluation order: `rank, rank + world, ...` without padding, so each image is scored exactly once."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochDataset(Dataset):
    """Wraps a dataset with `set_epoch`; items are fetched by `(epoch, index)` from `EpochSampler`."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self._epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self._epoch = epoch
        return self.dataset[index]
