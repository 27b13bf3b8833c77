"""The manifest table every adapter produces, and the per-row problem report."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from pepx import CLASSES
from pepx.fileio import display_path, file_problem

#: Columns every manifest has, in this order; others pass through after them.
MANIFEST_COLUMNS = ("path", "label", "patient_id", "source", "age_group", "view")


@dataclass(frozen=True)
class Problem:
    """One row or file that was left out, and why."""

    path: str
    row: int | None
    reason: str

    def __str__(self) -> str:
        where = f" (row {self.row})" if self.row is not None else ""
        return f"{display_path(self.path)}{where}: {self.reason}"


@dataclass
class SourceResult:
    """What `load_source` returns: the good rows and every problem met on the way."""

    manifest: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    spec: str = ""

    def problem_counts(self) -> dict[str, int]:
        """Problems counted by reason kind (the text before any ':' detail)."""
        return dict(Counter(p.reason.split(":")[0] for p in self.problems))

    def summary(self) -> str:
        """One line per problem kind with its count."""
        counts = self.problem_counts()
        if not counts:
            return f"{len(self.manifest)} rows, no problems"
        kinds = "; ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        return f"{len(self.manifest)} rows kept, {len(self.problems)} left out ({kinds})"


def finalize(rows: list[dict], problems: list[Problem], check_files: bool = True) -> pd.DataFrame:
    """Validate adapter rows into a manifest: known label, a readable regular file, one label per image
    (the same file - by path, link or hard link - under two labels is a label conflict: all its rows go),
    one class per patient.

    Each row dict has at least `path`, `label`, `patient_id`, `source` and `_row` (its line/row number for
    reports). Rows failing a check are appended to `problems` and dropped; the rest are returned.
    """
    good: list[dict] = []
    for r in rows:
        rowno = r.get("_row")
        path = str(r["path"])
        if r.get("label") not in CLASSES:
            problems.append(Problem(path, rowno, f"unknown label: {r.get('label')!r}"))
            continue
        problem = file_problem(path) if check_files else None
        if problem == "file not found":
            problems.append(Problem(path, rowno, "missing file: listed but not on disk"))
            continue
        if problem is not None:
            problems.append(Problem(path, rowno, f"unreadable file: {problem}"))
            continue
        good.append(r)
    good = _drop_label_conflicts(good, problems)
    frame = pd.DataFrame(good, columns=None if good else [*MANIFEST_COLUMNS, "_row"])
    for col in MANIFEST_COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.NA
    frame["patient_id"] = frame["patient_id"].astype("string")
    missing_pid = frame["patient_id"].isna() | (frame["patient_id"].str.strip() == "")
    # an image without a patient id is its own patient (marked, so splits keep it out of test)
    frame.loc[missing_pid, "patient_id"] = "img:" + frame.loc[missing_pid, "path"].astype(str)
    if missing_pid.any() and "patient_id_kind" not in frame.columns:
        frame["patient_id_kind"] = "source_patient_id"
    if missing_pid.any():
        frame.loc[missing_pid, "patient_id_kind"] = "per_image_pseudo"
    # a patient id under two classes is a labelling error: report and drop every row of that patient
    n_cls = frame.groupby("patient_id")["label"].nunique() if len(frame) else pd.Series(dtype=int)
    bad_pids = set(n_cls[n_cls > 1].index)
    if bad_pids:
        bad = frame["patient_id"].isin(bad_pids)
        for _, r in frame[bad].iterrows():
            classes = sorted(frame.loc[frame["patient_id"] == r["patient_id"], "label"].unique())
            problems.append(
                Problem(
                    r["path"],
                    r["_row"] if pd.notna(r["_row"]) else None,
                    f"patient under two classes: {r['patient_id']!r} in {classes}",
                )
            )
        frame = frame[~bad]
    # the same file listed twice would put one image in two splits
    dup = frame["path"].duplicated()
    for _, r in frame[dup].iterrows():
        problems.append(
            Problem(r["path"], r["_row"] if pd.notna(r["_row"]) else None, "duplicate row: file listed twice")
        )
    frame = frame[~dup]
    rest = [c for c in frame.columns if c not in MANIFEST_COLUMNS and c != "_row"]
    return frame[[*MANIFEST_COLUMNS, *rest]].reset_index(drop=True)


def _identity(path: str) -> tuple[int, int] | str:
    """What makes two paths one image: the file's device and inode when it exists, else the path."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.abspath(path)
    return st.st_dev, st.st_ino


def _drop_label_conflicts(rows: list[dict], problems: list[Problem]) -> list[dict]:
    """Rows whose image (one file, however reached) is listed under one label only; the others reported."""
    labels: dict[tuple[int, int] | str, set[str]] = {}
    keys = [_identity(str(r["path"])) for r in rows]
    for key, r in zip(keys, rows, strict=True):
        labels.setdefault(key, set()).add(r["label"])
    kept = []
    for key, r in zip(keys, rows, strict=True):
        if len(labels[key]) > 1:
            problems.append(Problem(str(r["path"]), r.get("_row"), "label conflict: the same image is listed "
                                    f"as {', '.join(sorted(labels[key]))}"))
        else:
            kept.append(r)
    return kept
