"""CoronaHack `Chest_xray_Corona_Metadata.csv` (Kaggle praveengovi/coronahack-chest-xraydataset).

Columns: `X_ray_image_name, Label, Dataset_type, Label_2_Virus_category, Label_1_Virus_category`.
Mapping to pepx classes (note the data set's own spelling `Pnemonia`):

| Label | Label_1_Virus_category | Label_2_Virus_category | pepx class |
|---|---|---|---|
| Normal | - | - | normal |
| Pnemonia | Virus | COVID-19 | COVID-19 |
| Pnemonia | bacteria / Virus / Stress-Smoking | any other (empty, SARS, ARDS, Streptococcus) | pneumonia |

Most images come from the Kermany pediatric set; their names carry a patient (`person12_virus_34.jpeg`,
`IM-0115-0001.jpeg`, `NORMAL2-IM-1427-0001.jpeg`), which becomes `patient_id` and `age_group=pediatric`.
Other images have no patient id: each gets its own (`per_image_pseudo`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from pepx.data.errors import SourceError
from pepx.data.manifest import Problem
from pepx.data.sources.common import index_files, nz, pick, read_table, require_columns

CSV_NAME = "Chest_xray_Corona_Metadata.csv"
KERMANY = re.compile(r"^(person\d+)_(?:bacteria|virus)_\d+|^((?:NORMAL2-)?IM-\d+)-\d+", re.IGNORECASE)


def map_coronahack(label: object, cat1: object, cat2: object) -> str | None:
    """pepx class of one CoronaHack row, or None when the label is unknown."""
    lab = str(label).strip().lower() if pd.notna(label) else ""
    if lab == "normal":
        return "normal"
    if lab in ("pnemonia", "pneumonia"):
        return "COVID-19" if pd.notna(cat2) and str(cat2).strip().lower() == "covid-19" else "pneumonia"
    return None


def kermany_patient(name: str) -> str | None:
    """The patient id in a Kermany file name, or None."""
    m = KERMANY.match(name)
    return (m.group(1) or m.group(2)) if m else None


def load_coronahack(path: Path, problems: list[Problem]) -> list[dict]:
    """Rows of a CoronaHack metadata CSV (path to the CSV or the folder holding it)."""
    csv = path / CSV_NAME if path.is_dir() else path
    if not csv.is_file():
        raise SourceError(f"coronahack: {csv} not found (expected {CSV_NAME})")
    df = read_table(csv)
    df = df.drop(columns=[c for c in df.columns if c.startswith("Unnamed")])
    require_columns(df, ("X_ray_image_name", "Label", "Dataset_type"), csv)
    lookup = index_files(csv.parent)
    rows: list[dict] = []
    for i, r in enumerate(df.itertuples(index=False), start=2):
        d = r._asdict()
        name = str(d["X_ray_image_name"]).strip()
        part = str(d.get("Dataset_type", "")).strip().lower()
        fpath = pick(lookup.get(name), part, csv.parent / part / name)
        cls = map_coronahack(d["Label"], d.get("Label_1_Virus_category"), d.get("Label_2_Virus_category"))
        pid = kermany_patient(name)
        rows.append(
            {
                "path": os.path.abspath(fpath),
                "label": cls or f"{d['Label']}",
                "_row": i,
                "patient_id": pid or f"coronahack:{name}",
                "source": "kermany" if pid else "coronahack",
                "age_group": "pediatric" if pid else pd.NA,
                "view": pd.NA,
                "patient_id_kind": "source_patient_id" if pid else "per_image_pseudo",
                "dataset_type": part.upper(),
                "orig_label_1": nz(d.get("Label_1_Virus_category")),
                "orig_label_2": nz(d.get("Label_2_Virus_category")),
            }
        )
    return rows
