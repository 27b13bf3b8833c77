"""The three budgets of `pepx reproduce`. Every setting of a profile lives here, in one place.

- ``smoke``: synthetic data, tiny images and networks, a few epochs: the whole grid and report in ~1-2 min on
  2 CPU cores. Checks the pipeline, not the paper.
- ``cpu``: for ``csv:../shared/data/cxr-real/metadata.csv`` at 850/100 images per class: the whole grid, one
  seed, under 45 min on 2 CPU cores (reduced resolution and width; images decoded once into the cache).
- ``paper``: the paper's setting (224 px, 1000/100 per class, full width, focal alpha = gamma = 1) for a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pepx.errors import ConfigError

MODELS: tuple[str, ...] = ("pepx_resnet", "resnet18", "covidnet")
LOSSES: tuple[str, ...] = ("ce", "focal")
REAL_DATA = "csv:../shared/data/cxr-real/metadata.csv"


@dataclass(frozen=True)
class Profile:
    """One budget of the grid: data, sizes, network width, optimisation and statistics settings."""

    name: str
    data: str
    n_train: int  # images per class
    n_test: int  # images per class
    image_size: int
    width: float
    epochs: int
    seeds: int = 1
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    scheduler: str = "cosine"
    augment: bool = False
    focal: dict[str, float] = field(default_factory=lambda: {"alpha": 1.0, "gamma": 1.0})  # the paper's
    split_seed: int = 0
    num_workers: int = 0
    # torch threads per run. 1 for small inputs: on a busy machine, multi-threaded kernels on small tensors
    # can run tens of times slower (OpenMP oversubscription); None = torch's default (all cores).
    num_threads: int | None = None
    n_boot: int = 2000  # bootstrap resamples for every CI of the report
    models: tuple[str, ...] = MODELS
    losses: tuple[str, ...] = LOSSES
    extra: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields, passed through

    def with_overrides(self, **overrides: Any) -> Profile:
        """A copy with the non-None ``overrides`` applied (CLI flags)."""
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
        return replace(self, **values)

    def train_config(self, model: str, loss: str, seed: int, split: str) -> dict[str, Any]:
        """The `TrainConfig` fields of one grid run on the shared split file ``split``."""
        return {
            "model": model, "loss": loss, "loss_kwargs": dict(self.focal) if loss == "focal" else {},
            "model_kwargs": {"width": self.width}, "data": self.data, "split": split,
            "n_train": self.n_train, "n_test": self.n_test, "n_val": 0, "split_seed": self.split_seed,
            "image_size": self.image_size, "augment": self.augment, "eval_splits": ["test"],
            "epochs": self.epochs, "batch_size": self.batch_size, "optimizer": self.optimizer, "lr": self.lr,
            "scheduler": self.scheduler, "seed": seed, "num_workers": self.num_workers,
            "num_threads": self.num_threads, "progress": False,
            **self.extra,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(name="smoke", data="synthetic", n_train=60, n_test=30, image_size=64, width=0.25,
                     epochs=6, seeds=2, batch_size=16, num_threads=1, n_boot=1000),
    # cpu: measured on the shared 2-core box at 112 px, width 0.5, batch 32 (noisy): ~75-100 img/s COVID-Net,
    # ~120-150 PEPX-ResNet, ~200 ResNet18 -> ~20 min for the grid at 10 epochs. Use num_threads=1 when the
    # machine is shared with other jobs.
    "cpu": Profile(name="cpu", data=REAL_DATA, n_train=850, n_test=100, image_size=112, width=0.5, epochs=10,
                   batch_size=32),
    "paper": Profile(name="paper", data=REAL_DATA, n_train=1000, n_test=100, image_size=224, width=1.0,
                     epochs=30, batch_size=32, num_workers=4, augment=False),
}


def get_profile(name: str, **overrides: Any) -> Profile:
    """The profile ``name`` with the non-None ``overrides`` (e.g. ``epochs=2``) applied."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name].with_overrides(**overrides)
