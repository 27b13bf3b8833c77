"""Leak check (patients, identical pixels across splits) and confound report (class x source / age / view)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from itertools import combinations

import pandas as pd

from pepx import CLASSES
from pepx.data.errors import ImageReadError
from pepx.data.io import read_image
from pepx.markdown import markdown_table

FACTORS = ("source", "age_group", "view")
NAMES = {"source": "source", "age_group": "age", "view": "view"}
#: Factors checked within each source for a value that goes with a class (not one identifying it outright).
WITHIN_SOURCE = ("age_group", "view")
#: "Goes with": at least this share of the value's images are one class, and the share exceeds that class's
#: share of the source by at least ``GOES_WITH_LIFT`` (cxr-real v2: 77 % of rsna's PA films are normal, 48 %
#: of rsna's films; 82 % of its AP films are pneumonia, 52 % of rsna's).
GOES_WITH_SHARE, GOES_WITH_LIFT = 0.75, 0.25


def pixel_hash(path: str) -> str:
    """sha1 of the decoded pixels (8-bit), so re-encoded copies of one image match."""
    arr = read_image(path)
    return hashlib.sha1((arr * 255 + 0.5).astype("uint8").tobytes() + str(arr.shape).encode()).hexdigest()


def _splits(frame: pd.DataFrame) -> pd.Series:
    return frame["split"] if "split" in frame.columns else pd.Series("all", index=frame.index)


@dataclass
class LeakReport:
    """Patients and identical images found in more than one split."""

    patient_overlap: dict[str, list[str]] = field(default_factory=dict)  # "train/test" -> patient ids
    pixel_duplicates: dict[str, list[tuple[str, str]]] = field(
        default_factory=dict
    )  # pair -> (path a, path b)
    hash_column: str | None = None
    unreadable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no patient and no identical image (where checked) is in two splits."""
        return not any(self.patient_overlap.values()) and not any(self.pixel_duplicates.values())

    @property
    def pixels_checked(self) -> bool:
        """Whether identical images were looked for (a ``pixel_sha1`` column, or decoded pixels)."""
        return self.hash_column is not None

    def n_patient_overlap(self) -> int:
        """Number of patients found in two splits (over all split pairs)."""
        return sum(len(v) for v in self.patient_overlap.values())

    def n_pixel_duplicates(self) -> int:
        """Number of identical-pixel image pairs across splits (0 also when not checked: see
        `pixels_checked`)."""
        return sum(len(v) for v in self.pixel_duplicates.values())

    def verdict(self) -> str:
        """``LEAK``, ``OK``, or ``OK for patients; identical images not checked``."""
        if not self.ok:
            return "LEAK"
        return "OK" if self.pixels_checked else "OK for patients; identical images not checked"

    def to_markdown(self) -> str:
        """Short markdown section."""
        lines = ["### Leak check", ""]
        lines.append(f"- patients in two splits: **{self.n_patient_overlap()}**")
        if self.pixels_checked:
            lines.append(f"- identical-pixel images in two splits: **{self.n_pixel_duplicates()}** "
                         f"(by `{self.hash_column}`)")
        else:
            lines.append("- identical-pixel images in two splits: **not checked** (no `pixel_sha1` column; "
                         "`leak_check(frame, decode=True)` hashes the decoded pixels)")
        for pair, pids in self.patient_overlap.items():
            if pids:
                lines.append(
                    f"  - {pair}: patients {', '.join(map(str, pids[:10]))}{' ...' if len(pids) > 10 else ''}"
                )
        for pair, dups in self.pixel_duplicates.items():
            for a, b in dups[:10]:
                lines.append(f"  - {pair}: `{a}` == `{b}`")
        if self.unreadable:
            lines.append(f"- {len(self.unreadable)} images could not be decoded for hashing")
        lines.append(f"- verdict: {self.verdict()}")
        return "\n".join(lines)


def leak_check(frame: pd.DataFrame, decode: bool = False) -> LeakReport:
    """Find patients and identical-pixel images shared by two splits of `frame` (needs a `split` column).

    Pixel identity uses the `pixel_sha1` column where present; otherwise, with `decode=True`, the decoded
    pixels of every image are hashed (slow on large sets).
    """
    rep = LeakReport()
    split = _splits(frame)
    names = [s for s in ("train", "val", "test") if (split == s).any()] or sorted(split.unique())
    pids = {s: set(frame.loc[split == s, "patient_id"].astype(str)) for s in names}
    hashes: pd.Series | None = None
    if "pixel_sha1" in frame.columns and frame["pixel_sha1"].notna().all():
        hashes, rep.hash_column = frame["pixel_sha1"].astype(str), "pixel_sha1"
    elif decode:
        vals = []
        for p in frame["path"]:
            try:
                vals.append(pixel_hash(str(p)))
            except ImageReadError:
                rep.unreadable.append(str(p))
                vals.append(f"unreadable:{p}")
        hashes, rep.hash_column = pd.Series(vals, index=frame.index), "decoded pixels (sha1)"
    for a, b in combinations(names, 2):
        key = f"{a}/{b}"
        rep.patient_overlap[key] = sorted(pids[a] & pids[b])
        if hashes is not None:
            ha = dict(zip(hashes[split == a], frame.loc[split == a, "path"], strict=True))
            rep.pixel_duplicates[key] = [
                (ha[h], p)
                for h, p in zip(hashes[split == b], frame.loc[split == b, "path"], strict=True)
                if h in ha
            ]
    return rep


@dataclass
class ConfoundReport:
    """Counts of each class by split and source / age group / view, and warnings where one identifies or goes
    with a class."""

    counts: pd.DataFrame
    warnings: list[str]

    def to_frame(self) -> pd.DataFrame:
        """Long table: split, factor (source / age_group), value, then one count column per class."""
        return self.counts

    def to_markdown(self) -> str:
        """Markdown tables per factor plus the warnings."""
        out = ["### Confound report", ""]
        for factor in FACTORS:
            sub = self.counts[self.counts["factor"] == factor]
            if sub.empty:
                continue
            out += [f"**{factor}** (images per class)", "", markdown_table(sub.drop(columns=["factor"])), ""]
        out.append("Warnings:" if self.warnings else
                   "No single source, age group or view identifies or goes with a class.")
        out += [f"- {w}" for w in self.warnings]
        return "\n".join(out)


def confound_report(frame: pd.DataFrame, min_share: float = 0.02, min_count: int = 10) -> ConfoundReport:
    """Class mix per split and source / age group / view, warning wherever one value alone identifies a class.

    A warning is raised for a value (of `source`, `age_group` or `view`) held by at least `min_count` images
    and `min_share` of the frame when it occurs in only one class ("... occurs only in class X: source
    identifies class"), or never occurs in a class that is present ("... never occurs in class X: age
    identifies class"); and, within each source, for an age group or view that goes with a class
    (:func:`goes_with`). Checked over the whole frame and within each split.
    """
    split = _splits(frame)
    tables, warnings = [], []
    scopes = [("all", frame)] + (
        [(s, frame[split == s]) for s in ("train", "val", "test") if (split == s).any()]
        if "split" in frame.columns
        else []
    )
    for scope, sub in scopes:
        present = [c for c in CLASSES if (sub["label"] == c).any()]
        flagged: set[str] = set()  # factor=value pairs warned of here
        for factor in FACTORS:
            if factor not in sub.columns:
                continue
            values = sub[factor].astype("string").fillna("NA")
            tab = pd.crosstab(values, sub["label"]).reindex(columns=list(CLASSES), fill_value=0)
            t = tab.reset_index().rename(columns={factor: "value", "index": "value"})
            t.columns = ["value", *CLASSES]
            t.insert(0, "factor", factor)
            t.insert(0, "split", scope)
            tables.append(t)
            if len(present) < 2 or len(tab) < 2:
                continue
            for value, row in tab.iterrows():
                n = int(row.sum())
                if value == "NA" or n < min_count or n < min_share * len(sub):
                    continue
                where = "" if scope == "all" else f"[{scope}] "
                has = [c for c in present if row[c] > 0]
                if len(has) < len(present):
                    flagged.add(f"{factor}={value}")
                if len(has) == 1:
                    warnings.append(
                        f"{where}{factor}={value} occurs only in class {has[0]}: "
                        f"{NAMES[factor]} identifies class"
                    )
                for c in present:
                    if row[c] == 0 and len(has) > 1:
                        warnings.append(
                            f"{where}{factor}={value} never occurs in class {c}: "
                            f"{NAMES[factor]} identifies class"
                        )
        if len(present) >= 2:
            warnings += goes_with(sub, "" if scope == "all" else f"[{scope}] ", min_share, min_count,
                                  skip=flagged)
    counts = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=["split", "factor", "value", *CLASSES])
    )
    return ConfoundReport(counts=counts, warnings=list(dict.fromkeys(warnings)))


def goes_with(frame: pd.DataFrame, prefix: str = "", min_share: float = 0.02, min_count: int = 10,
              skip: Collection[str] = ()) -> list[str]:
    """Within each source, every age group or view (at least ``min_count`` images and ``min_share`` of the
    frame) whose images are mostly one class: at least ``GOES_WITH_SHARE`` of them, and ``GOES_WITH_LIFT``
    more than that class's share of the source ("view=AP goes with class pneumonia within source=rsna: ...").
    A network can read the view (a portable AP film of a sick patient) instead of the disease. ``skip``:
    ``factor=value`` pairs already warned of as identifying a class."""
    sources = (frame["source"].astype("string").fillna("NA") if "source" in frame.columns
               else pd.Series("", index=frame.index))
    out = []
    for source, rows in frame.groupby(sources, sort=True):
        base = rows["label"].value_counts(normalize=True)
        within = f" within source={source}" if source else ""
        for factor in (f for f in WITHIN_SOURCE if f in rows.columns):
            tab = pd.crosstab(rows[factor].astype("string").fillna("NA"), rows["label"])
            for value, row in tab.iterrows():
                n, cls = int(row.sum()), row.idxmax()
                share = row[cls] / n if n else 0.0
                if (value == "NA" or f"{factor}={value}" in skip or n < min_count
                        or n < min_share * len(frame) or share < GOES_WITH_SHARE
                        or share - base[cls] < GOES_WITH_LIFT):
                    continue
                out.append(f"{prefix}{factor}={value} goes with class {cls}{within}: {100 * share:.0f} % of "
                           f"its {n} images, {100 * base[cls]:.0f} % of all {len(rows)} there")
    return out
