"""Samplers whose order is a pure function of (seed, epoch, rank), so runs and resumed runs repeat exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


def sampling_weights(labels: torch.Tensor, balance: str, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Relative draw weight of each image for ``balance`` = ``class`` or ``source-class``.

    ``class``: 1 / class count, so every class gets the same share. ``source-class`` (issue 15's mitigation
    b): classes balanced, and within a class each group (source) gets a share proportional to the square root
    of its size - equal shares would draw a 2-image source hundreds of times an epoch, natural shares leave a
    class to the source that sends most of it; the images of a (class, source) cell share its mass equally.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if balance == "class":
        return 1.0 / torch.bincount(labels).double()[labels]
    groups = torch.as_tensor(groups, dtype=torch.long)
    weights = torch.zeros(len(labels), dtype=torch.float64)
    for cls in labels.unique():
        in_cls = labels == cls
        counts = torch.bincount(groups[in_cls]).double()
        n = counts[groups[in_cls]]  # images in each image's (class, source) cell
        weights[in_cls] = n.sqrt() / counts[counts > 0].sqrt().sum() / n  # sums to 1 over the class
    return weights


class EpochSampler(Sampler[tuple[int, int]]):
    """Training order for one process: a shuffled or balanced draw from (seed, epoch), sharded by rank.

    Yields `(epoch, index)` pairs so that `EpochDataset` tells augmentation the epoch even inside persistent
    workers. Every rank draws the same global order, padded to a multiple of `world_size`, and takes every
    `world_size`-th item, like `DistributedSampler`. Lightning calls `set_epoch` before each epoch.
    ``balance``: ``none`` (a permutation), ``class`` or ``source-class`` (with replacement, by
    :func:`sampling_weights`; ``groups`` holds each image's source index).
    """

    def __init__(self, labels: torch.Tensor, seed: int, balance: str = "none", rank: int = 0,
                 world_size: int = 1, groups: torch.Tensor | None = None) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if balance not in ("none", "class", "source-class"):
            raise ValueError(f"balance={balance!r}: choose none, class or source-class")
        if balance == "source-class" and groups is None:
            raise ValueError("balance='source-class' needs each image's group (source)")
        self.seed, self.balance = int(seed), balance
        self.weights = None if balance == "none" else sampling_weights(self.labels, balance, groups)
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
        if self.weights is not None:
            order = torch.multinomial(self.weights, n, replacement=True, generator=gen)
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
