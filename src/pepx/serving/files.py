"""Files in and out of `pepx predict`: expanding inputs, writing predictions (CSV / JSON), Grad-CAM files."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pepx.data.errors import DataError
from pepx.data.io import IMAGE_SUFFIXES, is_dicom, read_image
from pepx.errors import ConfigError
from pepx.markdown import markdown_table
from pepx.serving.predictor import Prediction, Predictor

GLOB_CHARS = set("*?[")


def collect_inputs(specs: Sequence[str]) -> list[str]:
    """Files named by `specs`: a file as it is, a folder searched recursively for images (by suffix, or the
    DICOM preamble for files without one), a glob pattern expanded (`**` recursive). A spec that matches
    nothing is kept, so that it shows up as a "file not found" row."""
    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            out += [str(p) for p in sorted(path.rglob("*")) if p.is_file() and _looks_like_image(p)]
        elif not path.exists() and GLOB_CHARS & set(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            out += [m for m in matches if Path(m).is_file()] or [spec]
        else:
            out.append(spec)
    return list(dict.fromkeys(out))  # a file named twice is predicted once


def _looks_like_image(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or (suffix == "" and is_dicom(path))


def predictions_table(preds: Sequence[Prediction], classes: Sequence[str] = ()) -> pd.DataFrame:
    """One row per prediction (`Prediction.to_row`); with `classes`, every `prob_<class>` column is there
    even when no row has probabilities (all unreadable or rejected)."""
    table = pd.DataFrame([p.to_row() for p in preds])
    if classes:
        head = ["source", "status", "label", *(f"prob_{c}" for c in classes)]
        table = table.reindex(columns=head + [c for c in table.columns if c not in head])
    return table


def write_predictions(preds: Sequence[Prediction], out: str | Path,
                      extra: dict[str, list] | None = None, classes: Sequence[str] = ()) -> Path:
    """All rows into `out`: `.csv` (one row per input) or `.json` (a list of row objects)."""
    out = Path(out)
    table = predictions_table(preds, classes)
    for name, values in (extra or {}).items():
        table[name] = values
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        rows = json.loads(table.to_json(orient="records"))  # NaN / None -> null
        out.write_text(json.dumps(rows, indent=1) + "\n")
    elif out.suffix.lower() == ".csv":
        table.to_csv(out, index=False)
    else:
        raise ConfigError(f"--out {out}: use a .csv or .json file name")
    return out


def print_table(preds: Sequence[Prediction]) -> str:
    """A short Markdown table for the terminal: source, label, probabilities (3 decimals), the gate's verdict
    (when it is on), flagged / error / the gate's reason."""
    gated = any(p.gate.outcome != "off" for p in preds)
    rows = []
    for p in preds:
        row = {"image": p.source, "class": p.label or "-"}
        row.update({c: f"{v:.3f}" for c, v in p.probabilities.items()} if p.status == "ok" else {})
        if gated:
            row["gate"] = p.gate.outcome if p.status == "ok" else ""
        notes = [("flagged: " + ", ".join(p.flagged)) if p.flagged else (p.error or "")]
        if p.gate.outcome in ("rejected", "unfamiliar"):
            notes.append(p.gate.reason or "")
        row["note"] = "; ".join(n for n in notes if n)
        rows.append(row)
    return markdown_table(pd.DataFrame(rows).fillna(""))


def cam_names(sources: Sequence[str]) -> list[Path]:
    """Output stems that mirror the inputs' paths below their common folder (unique, no suffix)."""
    paths = [Path(s).resolve() for s in sources]
    if not paths:
        return []
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(common).with_suffix("") for p in paths]


def check_cam_class(predictor: Predictor, cam_class: str | None) -> None:
    """Refuse a `--cam-class` the bundle does not have (before any image is read)."""
    if cam_class is not None and cam_class not in predictor.classes:
        raise ConfigError(f"--cam-class {cam_class!r}: choose one of {', '.join(predictor.classes)}")


def write_cams(predictor: Predictor, preds: Sequence[Prediction], folder: str | Path,
               class_name: str | None = None, layer: str | None = None,
               alpha: float = 0.5) -> list[str | None]:
    """For each readable input: `NAME.png` (the radiograph with the heat map of `class_name`, default the
    predicted class) and `NAME.npy` (the raw map over the network's input, float32 [S, S]). Returns each
    row's PNG path (None for error rows and films the gate rejected)."""
    folder = Path(folder)
    index = None if class_name is None else predictor.classes.index(class_name)
    ok = [p for p in preds if p.status == "ok" and p.label is not None]  # a rejected film has no class
    names = dict(zip([p.source for p in ok], cam_names([p.source for p in ok]), strict=True))
    written: list[str | None] = []
    for p in preds:
        if p.status != "ok" or p.label is None:
            written.append(None)
            continue
        try:
            explanation = predictor.explain(read_image(p.source), class_index=index, layer=layer)
        except DataError:  # the file changed since it was predicted
            written.append(None)
            continue
        stem = folder / names[p.source]
        stem.parent.mkdir(parents=True, exist_ok=True)
        png = stem.with_name(stem.name + ".png")
        explanation.overlay(alpha=alpha).save(png)
        np.save(stem.with_name(stem.name + ".npy"), explanation.raw)
        written.append(str(png))
    return written


__all__ = ["cam_names", "collect_inputs", "print_table", "write_cams", "write_predictions"]


def report(predictor: Predictor, preds: Sequence[Prediction], out: str | Path | None = None,
           cam: str | Path | None = None, cam_class: str | None = None,
           cam_layer: str | None = None) -> list[str]:
    """Write what `pepx predict` was asked for - every row to `out` (.csv / .json) or a table, and the
    Grad-CAM files into `cam` - and return the lines to print."""
    n_ok = sum(p.status == "ok" for p in preds)
    cams = write_cams(predictor, preds, cam, cam_class, cam_layer) if cam else None
    bundle = predictor.bundle
    if out:
        written = write_predictions(preds, out, {"cam": cams} if cams else None, predictor.classes)
        lines = [f"{bundle.id} {bundle.version}: wrote {len(preds)} rows to {written} ({n_ok} predicted, "
                 f"{len(preds) - n_ok} unreadable)"]
    else:
        lines = [f"{bundle.id} {bundle.version} (calibrated probabilities; input gate "
                 f"{predictor.gate_status}; research use only)", print_table(preds)]
    return lines + ([f"Grad-CAM overlays and maps: {cam}"] if cams else [])
