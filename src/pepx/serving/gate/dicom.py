"""What a DICOM file's header says about the image, for the gate: `Modality`, `BodyPartExamined`,
`ViewPosition` and `PhotometricInterpretation` (read with pydicom, pixels skipped).

`tag_verdict(tags)`: rejected when the header says it is not a frontal chest radiograph - a modality other
than CR / DX (computed / digital radiography), a body part other than the chest, a lateral or decubitus view,
or a colour image - else None. The tags present are always reported (`describe_tags`), also for films the
header does not reject. A header missing a tag says nothing about it; the pixels are judged anyway.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom

TAGS = ("Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation")
RADIOGRAPHY = {"CR", "DX"}
CHEST = ("CHEST", "THORAX", "LUNG", "TORAX", "THORAKS")
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "XTABLE", "LDEC", "RDEC"}
GREY = {"MONOCHROME1", "MONOCHROME2"}


def read_tags(source: str | Path | bytes) -> dict[str, str]:
    """The four tags present in a DICOM file (a path or its bytes), upper-case strings; {} if unreadable."""
    try:
        ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else str(source),
                             stop_before_pixels=True, specific_tags=list(TAGS))
    except Exception:  # the pixel reader reports broken files; the header adds nothing then
        return {}
    out = {}
    for tag in TAGS:
        value = ds.get(tag)
        if value not in (None, ""):
            out[tag] = str(value).strip().upper()
    return out


def describe_tags(tags: dict[str, str]) -> str:
    """`DICOM Modality CR, ViewPosition PA, ...` (empty when no tag is present)."""
    return ("DICOM " + ", ".join(f"{k} {v}" for k, v in tags.items())) if tags else ""


def tag_verdict(tags: dict[str, str]) -> str | None:
    """Why the header says this is not a frontal chest radiograph, in plain words; None when it does not."""
    modality = tags.get("Modality")
    if modality and modality not in RADIOGRAPHY:
        return f"the DICOM header says modality {modality}, not a radiograph (CR or DX)"
    part = tags.get("BodyPartExamined")
    if part and not any(word in part for word in CHEST):
        return f"the DICOM header says body part {part}, not the chest"
    view = tags.get("ViewPosition")
    if view and view.replace(" ", "") in LATERAL_VIEWS:
        return f"the DICOM header says view {view}: a lateral film, not a frontal one"
    photometric = tags.get("PhotometricInterpretation")
    if photometric and photometric not in GREY:
        return f"the DICOM header says {photometric}: a colour image, not a radiograph"
    return None


__all__ = ["TAGS", "describe_tags", "read_tags", "tag_verdict"]
