"""Generic sources: a folder per class, and a CSV manifest (like cxr-real's metadata.csv)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pepx.data.errors import SourceError
from pepx.data.io import IMAGE_SUFFIXES
from pepx.data.manifest import MANIFEST_COLUMNS, Problem
from pepx.data.sources.common import map_label, nz, read_table
from pepx.fileio import file_problem, walk_files

PATH_COLUMNS = ("path", "filename", "file", "image", "image_path")
SOURCE_COLUMNS = ("source", "source_key", "dataset", "source_repo")


def load_folder(path: Path, problems: list[Problem]) -> list[dict]:
    """`<path>/<class>/**/<image>`; class folder names may be any alias (NORMAL, Non-COVID, covid, ...).

    Folder images carry no patient ids: each image is its own (`per_image_pseudo`) patient.
    """
    if not path.is_dir():
        raise SourceError(f"folder: {path} is not a folder")
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        raise SourceError(
            f"folder: {path} has no class sub-folders (expected e.g. normal/ pneumonia/ COVID-19/)"
        )
    rows: list[dict] = []
    for d in subdirs:
        cls = map_label(d.name)
        # FIFOs, devices, links (broken, looping, to folders) stay: `finalize` reports each with its reason
        for f in walk_files(d):
            if f.name.startswith("."):
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES and f.suffix != "" and file_problem(f) is None:
                problems.append(Problem(str(f), None, f"skipped: not an image file suffix ({f.suffix})"))
                continue
            rows.append(
                {
                    "path": os.path.abspath(f),
                    "label": cls or f"folder {d.name}",
                    "_row": None,
                    "patient_id": f"{d.name}/{f.relative_to(d)}",
                    "source": "folder",
                    "age_group": pd.NA,
                    "view": pd.NA,
                    "patient_id_kind": "per_image_pseudo",
                }
            )
    return rows


def load_csv(path: Path, problems: list[Problem]) -> list[dict]:
    """A CSV with a file column (`path`/`filename`, relative to the CSV's folder), `label` and optional
    `patient_id`, `source`/`source_key`, `age_group`, `view`; other columns pass through."""
    if path.is_dir():
        path = path / "metadata.csv"
    df = read_table(path)
    pcol = next((c for c in PATH_COLUMNS if c in df.columns), None)
    if pcol is None or "label" not in df.columns:
        raise SourceError(
            f"csv: {path} needs a file column (one of {PATH_COLUMNS}) and a `label` column; "
            f"has {list(df.columns)}"
        )
    scol = next((c for c in SOURCE_COLUMNS if c in df.columns), None)
    extra = [c for c in df.columns if c not in (*MANIFEST_COLUMNS, pcol, scol)]
    rows: list[dict] = []
    for i, d in enumerate(df.to_dict("records"), start=2):
        f = Path(str(d[pcol]).strip()) if pd.notna(d[pcol]) else None
        if f is None:
            problems.append(Problem(str(path), i, "malformed row: empty file name"))
            continue
        fpath = os.path.abspath(f if f.is_absolute() else path.parent / f)
        cls = map_label(d["label"])
        row = {
            "path": str(fpath),
            "label": cls or f"{d['label']}",
            "_row": i,
            "patient_id": nz(d.get("patient_id")),
            "source": nz(d[scol]) if scol else path.parent.name,
            "age_group": nz(d.get("age_group")),
            "view": nz(d.get("view")),
        }
        row.update({c: d[c] for c in extra})
        rows.append(row)
    return rows
