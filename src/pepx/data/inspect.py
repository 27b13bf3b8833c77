"""`inspect_source`: counts, a decode check of every image and confound warnings (`pepx data inspect`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from pepx import CLASSES
from pepx.data.audit import FACTORS, ConfoundReport, confound_report
from pepx.data.errors import ImageReadError
from pepx.data.io import read_image
from pepx.data.manifest import Problem, SourceResult
from pepx.data.sources import load_source
from pepx.fileio import display_path


@dataclass
class Inspection:
    """What `pepx data inspect` prints."""

    result: SourceResult
    decode_failures: list[Problem] = field(default_factory=list)
    decoded: int = 0
    confounds: ConfoundReport | None = None

    @property
    def problems(self) -> list[Problem]:
        """Source problems and decode failures together."""
        return [*self.result.problems, *self.decode_failures]

    def to_text(self) -> str:
        """Human-readable report."""
        m = self.result.manifest
        undecodable = len(self.decode_failures)
        ok = self.decoded - undecodable
        decoded = f" ({ok} decodable, {undecodable} undecodable)" if self.decoded else ""
        lines = [
            f"source: {display_path(self.result.spec)}",
            f"images: {len(m)}{decoded}   patients: {m['patient_id'].nunique()}",
            "",
        ]
        if m.empty:
            lines.append(f"No usable images: all {len(self.result.problems)} rows or files were left out "
                         "(reasons below)." if self.result.problems else "No images found.")
        else:
            lines.append(_counts(m))
        if "patient_id_kind" in m.columns:
            pseudo = m["patient_id_kind"].astype(str).eq("per_image_pseudo")
            if pseudo.any():
                lines.append(
                    f"\n{int(pseudo.sum())} images have per-image pseudo patient ids (train-only in splits)"
                )
        odd = [display_path(p) for p in m["path"] if display_path(p) != p]
        if odd:
            lines.append(f"\n{len(odd)} file names are not valid UTF-8 (kept; shown with \\x escapes):")
            lines += [f"  - {name}" for name in odd]
        if self.decoded:
            where = " (listed under problems below; they would fail training)" if undecodable else ""
            lines.append(f"\ndecode check of {self.decoded} images: {ok} decodable, {undecodable} undecodable"
                         f"{where}")
        if self.problems:
            lines.append(f"\nproblems ({len(self.problems)}):")
            kinds = pd.Series([p.reason.split(":")[0] for p in self.problems]).value_counts()
            lines += [f"  {k}: {v}" for k, v in kinds.items()]
            lines += [f"  - {p}" for p in self.problems]
        if self.confounds is not None:
            lines.append("\nconfound warnings:" if self.confounds.warnings else "\nno confound warnings")
            lines += [f"  WARNING: {w}" for w in self.confounds.warnings]
        return "\n".join(lines)


def _counts(m: pd.DataFrame) -> str:
    parts = []
    for factor in FACTORS:  # source, age_group, view
        if factor in m.columns:
            tab = pd.crosstab(m[factor].astype("string").fillna("NA"), m["label"]).reindex(
                columns=list(CLASSES), fill_value=0
            )
            tab["patients"] = m.groupby(m[factor].astype("string").fillna("NA"))["patient_id"].nunique()
            parts.append(tab.to_string())
    per_class = m.groupby("label")["patient_id"].agg(["size", "nunique"]).reindex(list(CLASSES), fill_value=0)
    per_class.columns = ["images", "patients"]
    return per_class.to_string() + "\n\n" + "\n\n".join(parts)


def decode_all(
    manifest: pd.DataFrame, progress: Callable[[int, int], None] | None = None
) -> tuple[list[Problem], int]:
    """Decode every image; return the failures (path, reason) and the number decoded."""
    failures = []
    for i, p in enumerate(manifest["path"]):
        try:
            read_image(str(p))
        except ImageReadError as e:
            failures.append(Problem(e.path, None, f"unreadable image: {e.reason}"))
        if progress:
            progress(i + 1, len(manifest))
    return failures, len(manifest)


def inspect_source(spec: str, decode: bool = True) -> Inspection:
    """Load `spec`, optionally decode every image, and build the confound report."""
    result = load_source(spec)
    ins = Inspection(result=result)
    if decode:
        ins.decode_failures, ins.decoded = decode_all(result.manifest)
    ins.confounds = confound_report(result.manifest) if len(result.manifest) else None
    return ins
