"""Patient-grouped, class-stratified K folds over a whole data set (`pepx reproduce --cv K`), and the
leave-source-out splits drawn from the same rows.

Every image with a real patient id lands in exactly one fold, all images of a patient in the same fold, each
class spread evenly over the folds (scikit-learn's ``StratifiedGroupKFold``). Fold ``k``'s model trains on
the other folds and predicts fold ``k``: pooled over the folds, every such image is predicted exactly once by
a model that never saw its patient.

Rows with per-image pseudo ids (``patient_id_kind == "per_image_pseudo"``: no real patient id, so one person
may hide under several ids) get fold ``-1`` by default: they train every fold's model and are never tested,
since a test image of such a person could have a sibling image in training. ``pseudo_test=True`` lets them be
test images (each its own group), and the report says so.

With ``inner_val=True`` the split of fold ``k`` leaves fold ``k`` out entirely and holds out fold
``(k + 1) mod K`` for scoring (as the run's ``test`` rows, ``cv_role = inner_val``): a recipe is chosen on
those scores, and the outer test fold is never touched.

Leave-source-out: a source is held out when it holds at least two classes with ``MIN_PER_CLASS`` images or
more (on cxr-real: cohen, crd, kermany, actualmed), so that its accuracy is not just "which class does this
hospital send"; its split trains on every other labelled row and tests every row of that source.

`cv_folds` is the one call `pepx reproduce --cv` makes here: the saved fold assignment, the folds run and the
held-out sources, as a `CVFolds` that writes each run's split file (`CVFolds.write_split`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from pepx import CLASSES
from pepx.data.audit import pixel_hash
from pepx.data.split import PSEUDO
from pepx.errors import ConfigError
from pepx.fileio import write_csv

TRAIN_ONLY = -1
MIN_PER_CLASS = 5


def _pseudo(frame: pd.DataFrame) -> pd.Series:
    if "patient_id_kind" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["patient_id_kind"].astype(str).eq(PSEUDO)


def assign_folds(manifest: pd.DataFrame, k: int, seed: int = 0, pseudo_test: bool = False) -> pd.DataFrame:
    """The labelled rows of ``manifest`` with a ``fold`` column (0..k-1, or -1 = training only).

    Raises `ConfigError` when ``k < 2`` or a class has fewer testable patients than folds.
    """
    if k < 2:
        raise ConfigError(f"--cv {k}: cross-validation needs at least 2 folds")
    frame = manifest[manifest["label"].isin(CLASSES)].reset_index(drop=True).copy()
    frame["patient_id"] = frame["patient_id"].astype(str)
    pseudo = _pseudo(frame)
    if pseudo.all():
        pseudo_test = True  # a plain folder: no real ids at all, images are split one by one
    testable = frame.index[~pseudo | pseudo_test]
    groups = np.where(pseudo, "pseudo:" + frame["path"].astype(str), frame["patient_id"])[testable]
    labels = frame.loc[testable, "label"].to_numpy()
    for cls in CLASSES:
        n = len(set(groups[labels == cls]))
        if 0 < n < k:
            raise ConfigError(f"--cv {k}: class {cls!r} has only {n} patients that may be tested; "
                              "use fewer folds")
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    frame["fold"] = TRAIN_ONLY
    for fold, (_, test) in enumerate(folds.split(np.zeros(len(testable)), labels, groups)):
        frame.loc[testable[test], "fold"] = fold
    return frame


def add_pixel_hashes(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``pixel_sha1`` column (decoded once here when the source has none) for leak checks."""
    if "pixel_sha1" in frame.columns and frame["pixel_sha1"].notna().all():
        return frame
    return frame.assign(pixel_sha1=[pixel_hash(str(p)) for p in frame["path"]])


def fold_split(folded: pd.DataFrame, fold: int, inner_val: bool = False) -> pd.DataFrame:
    """The split of one fold: ``test`` = fold ``fold``, ``train`` = the rest (training-only rows included).

    With ``inner_val`` the outer test fold is dropped, fold ``(fold + 1) mod K`` becomes the scored rows
    (``split = test``, ``cv_role = inner_val``) and the other folds train.
    """
    k = int(folded["fold"].max()) + 1
    if inner_val and k < 3:
        raise ConfigError(f"--inner-val needs --cv 3 or more (got {k}): one fold tests, one validates")
    scored = (fold + 1) % k if inner_val else fold
    frame = folded[folded["fold"] != fold] if inner_val else folded
    is_scored = frame["fold"] == scored
    out = frame.assign(split=np.where(is_scored, "test", "train"),
                       cv_role=np.where(is_scored, "inner_val" if inner_val else "test", "train"))
    return out.reset_index(drop=True)


def tested_rows(folded: pd.DataFrame, folds: Sequence[int]) -> pd.DataFrame:
    """The rows of ``folds`` with ``split = test``, and the training-only rows with ``split = train``."""
    rows = folded[folded["fold"].isin(folds) | (folded["fold"] == TRAIN_ONLY)]
    return rows.assign(split=np.where(rows["fold"] == TRAIN_ONLY, "train", "test"))


def fold_table(folded: pd.DataFrame) -> pd.DataFrame:
    """Images per class, patients and sources of each fold (``-1`` = training only)."""
    counts = pd.crosstab(folded["fold"], folded["label"]).reindex(columns=list(CLASSES), fill_value=0)
    counts["patients"] = folded.groupby("fold")["patient_id"].nunique()
    counts["sources"] = folded.groupby("fold")["source"].nunique()
    counts.index = [("training only" if f == TRAIN_ONLY else str(f)) for f in counts.index]
    counts.index.name = "fold"
    return counts


def lso_sources(frame: pd.DataFrame, min_per_class: int = MIN_PER_CLASS) -> list[str]:
    """Sources holding at least two classes with ``min_per_class`` images or more, by size (largest first)."""
    counts = pd.crosstab(frame["source"], frame["label"])
    eligible = counts[(counts >= min_per_class).sum(axis=1) >= 2]
    return eligible.sum(axis=1).sort_values(ascending=False, kind="stable").index.astype(str).tolist()


def lso_split(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Every labelled row: ``test`` where it comes from ``source``, ``train`` elsewhere."""
    rows = frame[frame["label"].isin(CLASSES)].drop(columns=["fold", "split", "cv_role"], errors="ignore")
    return rows.assign(split=np.where(rows["source"].astype(str) == source, "test", "train")).reset_index(
        drop=True)


def held_out_sources(frame: pd.DataFrame, names: Sequence[str] | None = None) -> list[str]:
    """The sources to hold out: ``names`` (checked against `lso_sources`) or every eligible source."""
    eligible = lso_sources(frame)
    unknown = [n for n in names or [] if n not in eligible]
    if unknown:
        raise ConfigError(f"--lso-sources {', '.join(unknown)}: not a source with two or more classes here; "
                          f"choose among {', '.join(eligible)}")
    return list(dict.fromkeys(names)) if names else eligible


@dataclass(frozen=True, eq=False)
class CVFolds:
    """What a cross-validation needs from its data: the fold assignment ``folded`` (as saved), the ``folds``
    run and the ``sources`` held out (empty without leave-source-out)."""

    folded: pd.DataFrame
    folds: tuple[int, ...]
    sources: tuple[str, ...] = ()

    def split(self, fold: int | None, inner_val: bool = False, held_out: str = "") -> pd.DataFrame:
        """The split of one run: ``held_out``'s (`lso_split`) when a source is held out, else ``fold``'s
        (`fold_split`)."""
        return (lso_split(self.folded, held_out) if held_out
                else fold_split(self.folded, fold, inner_val=inner_val))  # type: ignore[arg-type]

    def write_split(self, path: Path, fold: int | None, inner_val: bool = False, held_out: str = "") -> Path:
        """``path``, holding that `split` (written unless it exists)."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_csv(self.split(fold, inner_val, held_out), path, index=False)
        return path


def cv_folds(path: Path, manifest: Callable[[], pd.DataFrame], k: int, *, seed: int = 0,
             pseudo_test: bool = False, folds: Sequence[int] | None = None,
             lso: Sequence[str] | None = None, leave_source_out: bool = False) -> CVFolds:
    """The fold assignment saved at ``path`` (made there once from ``manifest()`` by `assign_folds`, with
    `add_pixel_hashes`), the ``folds`` run (default: all ``k``) and the held-out sources (``lso`` checked by
    `held_out_sources`, when ``leave_source_out``).

    Raises `ConfigError` for a fold outside ``0..k-1`` or a source that cannot be held out.
    """
    if not path.exists():
        folded = add_pixel_hashes(assign_folds(manifest(), k, seed=seed, pseudo_test=pseudo_test))
        write_csv(folded, path, index=False)
    folded = pd.read_csv(path, dtype={"patient_id": str, "label": str, "path": str})
    chosen = sorted(set(range(k) if folds is None else folds))
    if not chosen or min(chosen) < 0 or max(chosen) >= k:
        raise ConfigError(f"--folds {chosen}: choose among 0..{k - 1}")
    sources = tuple(held_out_sources(folded, lso)) if leave_source_out else ()
    return CVFolds(folded, tuple(chosen), sources)
