"""What `pepx audit` looks at: a run folder, a `pepx reproduce --cv` folder, or a data source.

A run folder gives one disease model and its split's test rows. A CV folder gives one grid cell's model per
fold, each with its own test fold (pooled out-of-fold: every image is scored by the model that never saw its
patient); folds whose run is not complete yet are left out, and the report says which were used. A data
source gives images only (the probes that need no disease model). The image-only probes run on every image
of the target: the run's split, the CV folder's ``folds.csv``, or the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pepx.data import DataError, load_source, load_split
from pepx.errors import ConfigError, RunError
from pepx.experiments.comparisons import HEADLINE
from pepx.experiments.grid import FOLDS_FILE, RUNS_DIR, GridRun, run_dir
from pepx.losses import LOSSES
from pepx.models import list_models
from pepx.training.layout import RunLayout


@dataclass(frozen=True)
class ScoredRun:
    """One disease model (a run folder) and the rows it is scored on (its split's test rows)."""

    name: str
    folder: Path
    test: pd.DataFrame


@dataclass
class AuditTarget:
    """The images of a target and, for a run or CV folder, its disease models with their test rows."""

    spec: str
    kind: str  # "run", "cv" or "data"
    data: pd.DataFrame
    runs: list[ScoredRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    variant: str = ""  # a CV folder's runs: the ablation or mitigation variant ("" = the profile's recipe)

    @property
    def has_model(self) -> bool:
        return bool(self.runs)


def _test_rows(layout: RunLayout) -> pd.DataFrame:
    split = load_split(layout.split)
    test = split[split["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise RunError(f"{layout.split}: the run's split has no test rows to probe")
    return test


def _run_target(folder: Path) -> AuditTarget:
    layout = RunLayout(folder).require()
    state = layout.state()
    target = AuditTarget(str(folder), "run", load_split(layout.split),
                         [ScoredRun(folder.name, folder, _test_rows(layout))])
    if not state.complete:
        target.notes.append(f"Run `{folder}` is {state.describe()}: its newest epoch's weights are probed.")
    return target


def _cells(out: Path, seed: int) -> list[tuple[str, str]]:
    """The (model, loss) cells of a CV folder that have a fold-0 run folder for ``seed``."""
    return [(m, l) for m in list_models() for l in LOSSES
            if RunLayout(run_dir(out, GridRun(m, l, seed, 0))).config.is_file()]


def parse_cell(cell: str) -> tuple[str, str]:
    model, plus, loss = cell.partition("+")
    if not plus or model not in list_models() or loss not in LOSSES:
        raise ConfigError(f"--cell {cell}: write MODEL+LOSS with MODEL among {', '.join(list_models())} and "
                          f"LOSS among {', '.join(LOSSES)}, e.g. pepx_resnet+focal")
    return model, loss


def _cv_target(out: Path, cell: str | None, seed: int, variant: str) -> AuditTarget:
    folded = pd.read_csv(out / FOLDS_FILE, dtype={"patient_id": str, "label": str, "path": str})
    k = int(folded["fold"].max()) + 1
    present = _cells(out, seed)
    if cell is not None:
        model, loss = parse_cell(cell)
    elif HEADLINE in present or len(present) != 1:
        model, loss = HEADLINE
    else:
        model, loss = present[0]
    runs, missing = [], []
    for fold in range(k):
        folder = run_dir(out, GridRun(model, loss, seed, fold, variant=variant))
        layout = RunLayout(folder)
        if layout.config.is_file() and layout.state().complete:
            runs.append(ScoredRun(folder.name, folder, _test_rows(layout)))
        else:
            missing.append(fold)
    if not runs:
        have = ", ".join(f"{m}+{l}" for m, l in present) or "none"
        what = f"{model}+{loss}" + (f" {variant}" if variant else "")
        raise RunError(f"{out}: no complete {what} seed-{seed} fold run under {RUNS_DIR}/ "
                       f"(cells with runs: {have}; choose one with --cell, a variant with --variant)")
    target = AuditTarget(str(out), "cv", folded, runs, variant=variant)
    named = f"{model}+{loss}" + (f" (variant `{variant}`)" if variant else "")
    left = f" (folds {missing} not complete: left out)" if missing else ""
    target.notes.append(f"Cross-validated folder `{out}`: {named}, seed {seed}, pooled out-of-fold over "
                        f"{len(runs)} of {k} folds{left}.")
    return target


def resolve_target(spec: str, cell: str | None = None, seed: int = 0, variant: str = "") -> AuditTarget:
    """A run folder, a `pepx reproduce --cv` folder (``cell`` = ``MODEL+LOSS``, default the headline cell
    or the only one; ``variant``: an ablation or mitigation variant of its runs, e.g. ``hist-eq``) or a data
    source; `ConfigError` / `RunError` / `DataError` say what is wrong."""
    folder = Path(spec)
    if folder.is_dir() and RunLayout(folder).config.is_file():
        if cell is not None or variant:
            raise ConfigError(f"--cell/--variant: {spec} is one run folder; they pick runs of a CV folder")
        return _run_target(folder)
    if folder.is_dir() and (folder / FOLDS_FILE).is_file():
        return _cv_target(folder, cell, seed, variant)
    if folder.is_dir():
        raise ConfigError(f"{spec}: a folder that is neither a run (config.yaml) nor a `pepx reproduce --cv` "
                          f"folder ({FOLDS_FILE}); give a data source as FORMAT:PATH")
    if cell is not None or variant:
        raise ConfigError("--cell/--variant: need a `pepx reproduce --cv` folder, not a data source")
    manifest = load_source(spec).manifest
    if manifest.empty:
        raise DataError(f"{spec}: no usable images (`pepx data inspect {spec}` lists why)")
    return AuditTarget(spec, "data", manifest)
