"""covid-chestxray-dataset (Cohen et al.) `metadata.csv`.

`finding` -> class (as COVID-Net built COVIDx): any finding naming COVID-19 (`COVID-19`,
`Pneumonia/Viral/COVID-19`, `COVID-19, ARDS`) -> COVID-19; `No Finding` -> normal; other pneumonias
(`Pneumonia/...`, SARS, MERS, ARDS, Streptococcus, Pneumocystis, Klebsiella, Legionella, ...) -> pneumonia;
anything else (`Tuberculosis`, `todo`, `Unknown`) is reported as an unknown label.
Only X-rays (`modality == X-ray`) in frontal views (PA, AP, AP Supine, AP semi erect...) are kept; CT
and lateral views are reported with their reason. Images are in `<folder>/images/<filename>`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pepx.data.errors import SourceError
from pepx.data.manifest import Problem
from pepx.data.sources.common import nz, read_table, require_columns

PNEUMONIA_WORDS = (
    "pneumonia",
    "sars",
    "mers",
    "ards",
    "streptococcus",
    "pneumocystis",
    "klebsiella",
    "legionella",
    "chlamydophila",
    "influenza",
    "mycoplasma",
    "varicella",
    "lipoid",
    "e.coli",
    "aspiration",
    "bacterial",
    "viral",
    "fungal",
    "herpes",
    "nocardia",
)


def map_finding(finding: object) -> str | None:
    """pepx class of a Cohen `finding` string, or None."""
    if finding is None or pd.isna(finding):
        return None
    f = str(finding).strip().lower()
    if "covid-19" in f or "covid19" in f:
        return "COVID-19"
    if f in ("no finding", "normal"):
        return "normal"
    if any(w in f for w in PNEUMONIA_WORDS):
        return "pneumonia"
    return None


def is_frontal(view: object) -> bool:
    """PA or any AP variant (AP, AP Supine, AP semi erect); lateral (L) and axial are not."""
    v = str(view).strip().upper() if pd.notna(view) else ""
    return v == "PA" or v.startswith("AP")


def age_group(age: object) -> object:
    """`pediatric` under 18 years, else `adult`; NA when unknown."""
    try:
        a = float(str(age))
    except ValueError:
        return pd.NA
    return pd.NA if pd.isna(a) else ("pediatric" if a < 18 else "adult")


def load_cohen(path: Path, problems: list[Problem]) -> list[dict]:
    """Rows of covid-chestxray-dataset (path to metadata.csv or the repository folder)."""
    csv = path / "metadata.csv" if path.is_dir() else path
    if not csv.is_file():
        raise SourceError(f"cohen: {csv} not found")
    df = read_table(csv)
    require_columns(df, ("patientid", "finding", "view", "filename"), csv)
    rows: list[dict] = []
    for i, d in enumerate(df.to_dict("records"), start=2):
        folder = str(d.get("folder") or "images") if pd.notna(d.get("folder")) else "images"
        fpath = Path(os.path.abspath(csv.parent / folder / str(d["filename"]).strip()))
        modality = str(d.get("modality", "X-ray")) if pd.notna(d.get("modality")) else "X-ray"
        if modality.strip().lower() not in ("x-ray", "xray", "cr", "dx"):
            problems.append(Problem(str(fpath), i, f"excluded: modality {modality} (X-ray only)"))
            continue
        if not is_frontal(d.get("view")):
            problems.append(Problem(str(fpath), i, f"excluded: view {d.get('view')} (frontal PA/AP only)"))
            continue
        cls = map_finding(d.get("finding"))
        rows.append(
            {
                "path": str(fpath),
                "label": cls or f"{d.get('finding')}",
                "_row": i,
                "patient_id": f"cohen-{str(d['patientid']).strip()}",
                "source": "cohen",
                "age_group": age_group(d.get("age")),
                "view": nz(d.get("view")),
                "patient_id_kind": "source_patient_id",
                "orig_finding": nz(d.get("finding")),
            }
        )
    return rows
