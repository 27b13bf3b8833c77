"""Run the grid {models} x {losses} x seeds with `pepx.training.fit` on one shared split; resumable.

Layout of the output folder: ``split.csv`` (made once, used by every run), ``grid.json`` (the profile, so a
second call with other settings is refused instead of mixing runs), ``timings.json`` (wall seconds per run)
and ``runs/<model>-<loss>-seed<k>/`` (training's run folders). A run whose ``predictions.csv`` exists after
all its epochs is skipped; a run with a checkpoint is resumed: a killed ``pepx reproduce`` continues.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pepx.errors import ConfigError
from pepx.experiments.profiles import Profile
from pepx.training.layout import RunLayout

SPLIT_FILE, GRID_FILE, TIMINGS_FILE, RUNS_DIR = "split.csv", "grid.json", "timings.json", "runs"


@dataclass(frozen=True)
class GridRun:
    """One training run of the grid."""

    model: str
    loss: str
    seed: int

    @property
    def cell(self) -> str:
        """``model+loss``: the grid cell (a row of Tables 1-4), shared by its seeds."""
        return f"{self.model}+{self.loss}"

    @property
    def name(self) -> str:
        return f"{self.model}-{self.loss}-seed{self.seed}"


def plan(models: Sequence[str], losses: Sequence[str], seeds: Sequence[int]) -> list[GridRun]:
    """Every (model, loss, seed), models outermost, in the order given."""
    return [GridRun(m, l, s) for m in models for l in losses for s in seeds]


def run_dir(out: str | Path, run: GridRun) -> Path:
    return Path(out) / RUNS_DIR / run.name


def is_complete(path: Path, epochs: int) -> bool:
    """True when the run folder has its final predictions and one metrics row per epoch."""
    layout = RunLayout(path)
    metrics = layout.metrics
    if not layout.predictions.exists() or not metrics.exists():
        return False
    frame = pd.read_csv(metrics)
    return len(frame) > 0 and int(frame["epoch"].max()) >= epochs


def prepare(profile: Profile, out: str | Path) -> Path:
    """Create ``out`` and its shared split (refusing an ``out`` made with other settings); return it."""
    from pepx.data import balanced_split, load_source, save_split

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    free = ("seeds", "models", "losses", "n_boot")  # may change between calls on one folder
    settings = {k: v for k, v in profile.to_dict().items() if k not in free}
    grid_file = out / GRID_FILE
    if grid_file.exists():
        saved = json.loads(grid_file.read_text())
        if saved != json.loads(json.dumps(settings)):
            changed = sorted(k for k in settings if saved.get(k) != json.loads(json.dumps(settings[k])))
            raise ConfigError(f"{out} holds a reproduce with other settings ({', '.join(changed)}): "
                             "use another --out, or the same settings to continue it")
    else:
        grid_file.write_text(json.dumps(settings, indent=1))
    split = out / SPLIT_FILE
    if not split.exists():
        manifest = load_source(profile.data).manifest
        frame = balanced_split(manifest, profile.n_train, profile.n_test, n_val=0, seed=profile.split_seed)
        save_split(frame, split)
    return split


def run_grid(profile: Profile, out: str | Path, seeds: Sequence[int],
             log: Callable[[str], None] = print) -> dict[GridRun, Path]:
    """Train every run of the grid that is not complete yet; returns each run's folder.

    Wall seconds of each run (summed over interrupted attempts) are kept in ``timings.json``.
    """
    from pepx.training import TrainConfig, fit

    out = Path(out)
    split = prepare(profile, out)
    timings_file = out / TIMINGS_FILE
    timings: dict[str, float] = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    runs = plan(profile.models, profile.losses, seeds)
    folders = {}
    for i, run in enumerate(runs, 1):
        path = folders[run] = run_dir(out, run)
        if is_complete(path, profile.epochs):
            log(f"[{i}/{len(runs)}] {run.name}: complete, skipped")
            continue
        resume = RunLayout(path).holds_run()
        log(f"[{i}/{len(runs)}] {run.name}: {'resuming' if resume else 'training'} ...")
        values = profile.train_config(run.model, run.loss, run.seed, str(split.resolve()))
        config = TrainConfig.from_dict(values)
        start = time.perf_counter()
        fit(config, path, resume=resume)
        timings[run.name] = timings.get(run.name, 0.0) + time.perf_counter() - start
        timings_file.write_text(json.dumps(timings, indent=1))
        log(f"[{i}/{len(runs)}] {run.name}: done in {timings[run.name]:.1f} s")
    return folders
