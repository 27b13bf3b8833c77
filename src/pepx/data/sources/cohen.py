"""covid-chestxray-dataset (Cohen et al.) `metadata.csv`.

Two mappings of `finding` to a class (docs/data.md lists them exactly):

- ``broad`` (default, `map_finding`): any finding naming COVID-19 (`COVID-19`, `Pneumonia/Viral/COVID-19`,
  `COVID-19, ARDS`) -> COVID-19; `No Finding` -> normal; any other finding containing one of
  `PNEUMONIA_WORDS` (`Pneumonia/...`, SARS, MERS, ARDS, Streptococcus, Pneumocystis, Klebsiella, Lipoid, ...)
  -> pneumonia; anything else (`Tuberculosis`, `todo`, `Unknown`) is reported as an unknown label.
- ``covidnet`` (`cohen:DIR?mapping=covidnet`, `map_finding_covidnet`): COVID-Net's `create_COVIDx` rule: the
  last `/`-part of the finding must be exactly (case aside) one of `COVIDNET_MAPPING`; everything else,
  `No Finding` included (COVIDx took its normal images from RSNA), is left out and reported.

A patient with a disease film and an earlier `No Finding` film (by `offset`, else `date`) keeps the disease
films; the earlier, pre-illness `No Finding` films are left out and reported (otherwise the patient, under two
classes, would lose every row). Only X-rays (`modality == X-ray`) in frontal views (PA, AP, AP Supine, AP semi
erect...) are kept; CT and lateral views are reported with their reason. Images are in
`<folder>/images/<filename>`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pepx.data.errors import SourceError
from pepx.data.manifest import Problem
from pepx.data.sources.common import nz, read_table, require_columns

MAPPINGS = ("broad", "covidnet")
#: COVID-Net's mapping (create_COVIDx.ipynb), applied to the last `/`-part of the finding, lower-cased.
COVIDNET_MAPPING = {
    "covid-19": "COVID-19",
    "sars": "pneumonia",
    "mers": "pneumonia",
    "streptococcus": "pneumonia",
    "klebsiella": "pneumonia",
    "chlamydophila": "pneumonia",
    "legionella": "pneumonia",
    "e.coli": "pneumonia",
}
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


def map_finding_covidnet(finding: object) -> str | None:
    """pepx class of a Cohen `finding` under COVID-Net's mapping, or None (left out)."""
    if finding is None or pd.isna(finding):
        return None
    return COVIDNET_MAPPING.get(str(finding).split("/")[-1].strip().lower())


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


def _when(row: dict) -> tuple[float | None, pd.Timestamp | None]:
    """A film's time: its `offset` (days) and its `date`, each None when missing or unreadable."""
    try:
        offset = float(str(row.get("offset")))
    except ValueError:
        offset = None
    offset = None if offset is None or pd.isna(offset) else offset
    raw = row.get("date")
    date = pd.to_datetime(raw, errors="coerce", format="mixed") if pd.notna(raw) else None
    return offset, (None if date is None or pd.isna(date) else date)


def _earlier(a: tuple, b: tuple) -> bool | None:
    """Whether film time ``a`` is before ``b`` (offset first, then date); None when not comparable."""
    for i in (0, 1):
        if a[i] is not None and b[i] is not None:
            return bool(a[i] < b[i])
    return None


def drop_pre_illness(rows: list[dict], problems: list[Problem]) -> list[dict]:
    """Leave out (and report) each `No Finding` film taken before every disease film of the same patient."""
    by_patient: dict[str, list[dict]] = {}
    for r in rows:
        by_patient.setdefault(r["patient_id"], []).append(r)
    dropped: set[int] = set()
    for films in by_patient.values():
        sick = [f for f in films if f["label"] in ("COVID-19", "pneumonia")]
        if not sick:
            continue
        disease = "COVID-19" if any(f["label"] == "COVID-19" for f in sick) else "pneumonia"
        for f in (f for f in films if f["label"] == "normal"):
            if all(_earlier(f["_when"], s["_when"]) for s in sick):
                dropped.add(id(f))
                problems.append(Problem(f["path"], f["_row"], "excluded: 'No Finding' film taken before "
                                        f"this patient's {disease} films (pre-illness)"))
    return [r for r in rows if id(r) not in dropped]


def load_cohen(path: Path, problems: list[Problem], mapping: str = "broad") -> list[dict]:
    """Rows of covid-chestxray-dataset (path to metadata.csv or the repository folder); ``mapping`` is
    ``broad`` (default) or ``covidnet`` (see the module docstring)."""
    if mapping not in MAPPINGS:
        raise SourceError(f"cohen: mapping={mapping!r}; choose one of {', '.join(MAPPINGS)}")
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
        if mapping == "covidnet":
            cls = map_finding_covidnet(d.get("finding"))
            if cls is None:
                problems.append(Problem(str(fpath), i, f"excluded: finding {d.get('finding')!r} is not in "
                                                       "COVID-Net's mapping (mapping=covidnet)"))
                continue
        else:
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
                "_when": _when(d),
            }
        )
    rows = drop_pre_illness(rows, problems)
    for r in rows:
        del r["_when"]
    return rows
