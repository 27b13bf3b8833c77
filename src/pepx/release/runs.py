"""The one place `pepx.release` reads a training run folder, through `pepx.training.RunLayout`.

Reads through `pepx.training.load_run` (model + config) and the run's split; this imports Lightning, which
is why it lives here and not in `pepx.serving` (the inference path never loads a run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch import nn

from pepx.data import load_split
from pepx.errors import RunError
from pepx.training import TrainConfig, load_run
from pepx.training.layout import RunLayout


@dataclass(frozen=True)
class RunInfo:
    """A trained run: its folder, network (eval mode, CPU), config and split (None without split.csv)."""

    path: Path
    model: nn.Module
    config: TrainConfig
    split: pd.DataFrame | None

    def rows(self, name: str) -> pd.DataFrame:
        """The split's rows called `name` (train / val / test); empty when there are none."""
        if self.split is None or "split" not in self.split.columns:
            return pd.DataFrame(columns=["path", "label", "patient_id"])
        return self.split[self.split["split"] == name].reset_index(drop=True)


def read_run(run_dir: str | Path) -> RunInfo:
    """Load the run folder `run_dir`; `RunError` names the folder and what is missing."""
    layout = RunLayout(run_dir).require()
    try:
        model, config = load_run(layout.root)
    except (FileNotFoundError, RuntimeError) as err:
        raise RunError(f"{layout.root}: cannot load the trained network ({err})") from None
    split = load_split(layout.split) if layout.split.is_file() else None
    return RunInfo(layout.root, model.cpu().eval(), config, split)


__all__ = ["RunInfo", "read_run"]
