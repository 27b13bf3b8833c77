"""Balanced, patient-disjoint train/val/test splits, saved as CSV."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pepx import CLASSES
from pepx.data.errors import SplitError
from pepx.data.sources import source_path
from pepx.fileio import atomic_path, check_output_file

log = logging.getLogger("pepx.data")
SPLITS = ("train", "val", "test")
PSEUDO = "per_image_pseudo"


def _quota(total: int, weights: pd.Series) -> dict[str, int]:
    """Split `total` over the index of `weights` proportionally (largest remainder), never above a weight."""
    w = weights[weights > 0].astype(float)
    if w.sum() == 0 or total == 0:
        return {k: 0 for k in weights.index}
    raw = w / w.sum() * total
    q = np.floor(raw).astype(int)
    for k in (raw - q).sort_values(ascending=False).index[: total - int(q.sum())]:
        q[k] += 1
    return {k: int(q.get(k, 0)) for k in weights.index}


def _take(patients: list[tuple[str, int]], n: int) -> tuple[list[str], int]:
    """Take whole patients in order until exactly `n` images, skipping any that would overflow."""
    chosen, got = [], 0
    for pid, k in patients:
        if got == n:
            break
        if got + k <= n:
            chosen.append(pid)
            got += k
    return chosen, got


def balanced_split(
    manifest: pd.DataFrame,
    n_train: int,
    n_test: int,
    n_val: int = 0,
    seed: int = 0,
    stratify_source: bool = False,
) -> pd.DataFrame:
    """Pick `n_train`/`n_val`/`n_test` images per class, whole patients at a time, no patient in two splits.

    Test is drawn first, then val, then train. Rows with `patient_id_kind == "per_image_pseudo"` (no real
    patient id: one person may hide under many ids) only go to train, unless no row of the manifest has a
    real id (a plain folder of images): then they are eligible everywhere, with a warning, since
    patient-disjointness cannot be checked at all. With `stratify_source`, each split's quota in a class is
    shared across sources in proportion to the images available. Deterministic per `seed`.
    Returns the chosen rows with a `split` column; raises `SplitError` when a class is too small.
    """
    need = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    if min(need.values()) < 0:
        raise SplitError(f"split sizes must be >= 0, got {need}")
    df = manifest.reset_index(drop=True).copy()
    df["patient_id"] = df["patient_id"].astype(str)
    kind = df["patient_id_kind"] if "patient_id_kind" in df.columns else pd.Series("", index=df.index)
    pseudo = kind.astype(str).eq(PSEUDO)
    if pseudo.all() and (need["test"] or need["val"]):
        log.warning(
            "no row has a real patient id: images are split one by one, so a patient with several images "
            "may land in train and test; the leak check can only look for identical pixels"
        )
        pseudo = pd.Series(False, index=df.index)
    elif pseudo.any() and (need["test"] or need["val"]):
        log.warning(
            "%d rows have per-image pseudo patient ids (%s): kept out of val/test, eligible for train only",
            int(pseudo.sum()),
            ", ".join(f"{k}={v}" for k, v in df[pseudo]["label"].value_counts().items()),
        )
    # a patient's group = all its rows; its eligibility: pseudo rows are their own train-only patients
    df["_pid"] = np.where(pseudo, "pseudo:" + df["path"].astype(str), df["patient_id"])
    df["_eligible_eval"] = ~pseudo
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED])
    assign: dict[str, str] = {}
    for ci, label in enumerate(CLASSES):
        sub = df[df["label"] == label]
        groups = (
            sub.groupby("_pid")
            .agg(n=("path", "size"), source=("source", "first"), eligible=("_eligible_eval", "all"))
            .sort_index()
        )
        rng = np.random.default_rng(ss.spawn(len(CLASSES))[ci])
        groups = groups.iloc[rng.permutation(len(groups))]
        strata = groups.groupby("source").groups if stratify_source else {"all": groups.index}
        for split in ("test", "val", "train"):
            if need[split] == 0:
                continue
            free = groups[~groups.index.isin(assign.keys())]
            if split != "train":
                free = free[free["eligible"]]
            if stratify_source:
                avail = free.groupby("source")["n"].sum()
                quotas = _quota(need[split], avail)
            else:
                quotas = {"all": need[split]}
            got_total = 0
            for stratum, q in quotas.items():
                part = free if not stratify_source else free[free.index.isin(strata[stratum])]
                chosen, got = _take(list(zip(part.index, part["n"], strict=True)), q)
                assign.update({pid: split for pid in chosen})
                got_total += got
            if got_total < need[split]:
                _too_small(label, split, need, sub, groups, free, got_total)
    df["split"] = df["_pid"].map(assign)
    out = df[df["split"].notna()].drop(columns=["_pid", "_eligible_eval"])
    order = {s: i for i, s in enumerate(SPLITS)}
    out = out.assign(_o=out["split"].map(order), _c=out["label"].map(CLASSES.index))
    return (
        out.sort_values(["_o", "_c", "patient_id", "path"]).drop(columns=["_o", "_c"]).reset_index(drop=True)
    )


def _too_small(
    label: str,
    split: str,
    need: dict[str, int],
    sub: pd.DataFrame,
    groups: pd.DataFrame,
    free: pd.DataFrame,
    got: int,
) -> None:
    eligible = groups[groups["eligible"]]
    raise SplitError(
        f"class {label!r}: cannot fill {split} with {need[split]} images (got {got}). "
        f"The class has {len(sub)} images of {len(groups)} patients; "
        f"{int(eligible['n'].sum())} images of {len(eligible)} patients have real patient ids "
        f"(val/test draw only from those); {int(free['n'].sum())} images were still free for {split}. "
        f"Asked for train={need['train']}, val={need['val']}, test={need['test']} per class."
    )


def check_split_out(out: str | Path, spec: str, manifest: pd.DataFrame) -> Path:
    """`out` as a Path when the split of the source `spec` may be written there: a file name (not a folder,
    not a FIFO) that is neither the source's own label file nor one of its images; else an error naming it."""
    out = check_output_file(out, "--out")
    target = out.resolve()
    own = source_path(spec)
    if own is not None and (target == own.resolve() or (own.is_dir() and out.is_file() and
                                                        target.parent == own.resolve()
                                                        and out.suffix.lower() in (".csv", ".txt"))):
        raise SplitError(f"--out {out}: is a label file of the data source {spec}; name another file")
    if out.exists() and str(target) in {str(Path(p).resolve()) for p in manifest["path"]}:
        raise SplitError(f"--out {out}: is one of the source's images; name another file")
    return out


def save_split(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a split (any manifest with a `split` column) as CSV, atomically; file names that are not valid
    UTF-8 are written as their bytes (read back by `load_split`)."""
    if "split" not in df.columns:
        raise ValueError("save_split: frame has no `split` column")
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, errors="surrogateescape")
    return path


def load_split(path: str | Path) -> pd.DataFrame:
    """Read a split CSV written by `save_split` (ids stay strings); `SplitError` names the file when it is
    missing, unreadable or lacks a split's columns."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path}: no such split file" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        df = pd.read_csv(path, dtype={"patient_id": str, "label": str, "split": str, "path": str},
                         encoding_errors="surrogateescape")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SplitError(f"{path}: not a readable split CSV ({str(err).strip().splitlines()[0]})") from None
    missing = {"path", "label", "patient_id", "split"} - set(df.columns)
    if missing:
        raise SplitError(f"{path}: not a split file (missing {sorted(missing)})")
    return df
