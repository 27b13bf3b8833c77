"""Files in and out of `pepx predict`: expanding inputs, writing predictions (CSV / JSON), Grad-CAM files.

Nothing here ever writes over an input or over a file pepx did not write: `check_outputs` refuses, before
anything is predicted, an `--out` that is not a .csv / .json file name (or is a folder, a FIFO), a `--cam`
folder that holds an input or lies inside an input folder, and a heat-map name already taken by a file that
is not a pepx heat map (pepx's carry a PNG text chunk saying so). Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, PngImagePlugin

from pepx.data.errors import DataError
from pepx.data.io import IMAGE_SUFFIXES, is_dicom, read_image
from pepx.errors import ConfigError
from pepx.fileio import atomic_path, check_output_file, display_path, file_problem, walk_files, write_text
from pepx.markdown import text_table
from pepx.serving.cam_picture import cam_picture
from pepx.serving.predictor import Prediction, Predictor

GLOB_CHARS = set("*?[")
OUT_SUFFIXES = (".csv", ".json")
#: Heat-map files: `<input file name>` + these, so `a.png`, `a.jpg` and `a.dcm` never share one.
CAM_PNG, CAM_NPY = ".cam.png", ".cam.npy"
#: The PNG text chunk that marks a heat map as pepx's (only such files are ever written over).
CAM_MARK = ("Software", "pepx Grad-CAM")


def collect_inputs(specs: Sequence[str]) -> list[str]:
    """Files named by `specs`: a file as it is, a folder searched recursively for images (by suffix, or the
    DICOM preamble for files without one), a glob pattern expanded (`**` recursive). Links to folders are not
    followed inside a folder; FIFOs, devices and broken or looping links found there are kept, so that each
    becomes a row with its reason. A spec that matches nothing is kept ("file not found" row)."""
    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            out += [str(p) for p in walk_files(path) if _listed(p)]
        elif not path.exists() and not path.is_symlink() and GLOB_CHARS & set(spec):
            matches = [str(p) for p in _glob(spec) if not p.is_dir() or p.is_symlink()]
            out += [m for m in matches if _listed(Path(m))] or [spec]
        else:
            out.append(spec)
    return list(dict.fromkeys(out))  # a file named twice is predicted once


def _glob(spec: str) -> list[Path]:
    """`spec` expanded like `glob.glob(recursive=True)`, but without following links to folders (a link
    to `..` would repeat the tree)."""
    parts = Path(spec).parts
    first = next(i for i, part in enumerate(parts) if GLOB_CHARS & set(part))
    root = Path(*parts[:first]) if first else Path()
    return sorted(root.glob(str(Path(*parts[first:]))))


def _listed(path: Path) -> bool:
    """An image by its suffix (or a suffix-less DICOM), or an entry that is not a readable regular file."""
    if file_problem(path) is not None:
        return True
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or (suffix == "" and is_dicom(path))


def predictions_table(preds: Sequence[Prediction], classes: Sequence[str] = (),
                      names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per prediction (`Prediction.to_row`, classes renamed by `names`: `Bundle.display`); with
    `classes`, every `prob_<class>` column is there even when no row has probabilities (all unreadable or
    rejected)."""
    table = pd.DataFrame([p.to_row(names) for p in preds])
    if classes:
        head = ["source", "status", "label", *(f"prob_{(names or {}).get(c, c)}" for c in classes)]
        table = table.reindex(columns=head + [c for c in table.columns if c not in head])
    return table


def write_predictions(preds: Sequence[Prediction], out: str | Path,
                      extra: dict[str, list] | None = None, classes: Sequence[str] = (),
                      names: Mapping[str, str] | None = None) -> Path:
    """All rows into `out`, atomically: `.csv` (one row per input) or `.json` (a list of row objects); class
    names as `names` gives them (`Bundle.display`)."""
    out = check_out_file(out)
    table = predictions_table(preds, classes, names)
    for name, values in (extra or {}).items():
        table[name] = values
    if out.suffix.lower() == ".json":
        rows = json.loads(table.to_json(orient="records"))  # NaN / None -> null
        return write_text(out, json.dumps(rows, indent=1) + "\n")
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return out


def print_table(preds: Sequence[Prediction], names: Mapping[str, str] | None = None) -> str:
    """A compact table for the terminal: file name (the path where two share a name), class, probabilities
    (3 decimals), flagged, the gate's verdict (when it is on), and a note (error, the gate's reason); classes
    as `names` gives them (`Bundle.display`). `--out` keeps full paths."""
    name = (lambda c: names.get(c, c)) if names else (lambda c: c)
    short = [display_path(Path(p.source).name) for p in preds]
    shown = [s if short.count(s) == 1 else display_path(p.source) for s, p in zip(short, preds, strict=True)]
    gated = any(p.gate.outcome != "off" for p in preds)
    rows = []
    for file, p in zip(shown, preds, strict=True):
        row = {"file": file, "class": name(p.label) if p.label else "-"}
        row.update({name(c): f"{v:.3f}" for c, v in p.probabilities.items()} if p.status == "ok" else {})
        row["flagged"] = ", ".join(map(name, p.flagged))
        if gated:
            row["gate"] = p.gate.outcome if p.status == "ok" else ""
        notes = [p.error or ""]
        if p.gate.outcome in ("rejected", "unfamiliar"):
            notes.append(p.gate.reason or "")
        row["note"] = "; ".join(n for n in notes if n)
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("")
    frame = frame[[c for c in frame.columns if c in ("file", "class") or frame[c].astype(bool).any()]]
    return text_table(frame)


def flag_legend(predictor: Predictor) -> str | None:
    """One line saying what `flagged` means for this bundle (None when it has no operating point)."""
    points = predictor.bundle.config.get("operating_points") or {}
    if not points:
        return None
    names = predictor.bundle.display
    each = "; ".join(f"{names.get(c, c)} >= {p['threshold']:.3f}" + (
        f", chosen for {100 * p['target_sensitivity']:.0f} % sensitivity on validation films"
        if isinstance(p.get("target_sensitivity"), (int, float)) else "") for c, p in points.items())
    return (f"flagged: the class's probability reached its operating point ({each}), whether or not it is "
            "the most probable class")


def caveat_lines(preds: Sequence[Prediction], names: Mapping[str, str] | None = None) -> list[str]:
    """Below the terminal table: the card's caveat of each class predicted, once."""
    by_label = {p.label: p.caveat for p in preds if p.caveat}
    names = names or {}
    return [f"model card on {names.get(label, label)} calls: {text}" for label, text in by_label.items()]


# ---------------------------------------------------------------------- checks before anything is read
def check_out_file(out: str | Path) -> Path:
    """`--out` must be a .csv or .json file name, and not a folder or a special file."""
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"--out {display_path(path)}: is a folder; name a .csv or .json file")
    if path.suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError(f"--out {display_path(path)}: use a .csv or .json file name")
    return check_output_file(path, "--out")


def check_cam_class(predictor: Predictor, cam_class: str | None) -> None:
    """Refuse a `--cam-class` the bundle does not have (before any image is read)."""
    if cam_class is not None and cam_class not in predictor.classes:
        raise ConfigError(f"--cam-class {cam_class!r}: choose one of {', '.join(predictor.classes)}")


def check_outputs(predictor: Predictor, specs: Sequence[str], inputs: Sequence[str], out: str | None,
                  cam: str | None, cam_class: str | None, cam_layer: str | None) -> None:
    """Everything `pepx predict` will write, checked before any image is read (see the module docstring)."""
    check_cam_class(predictor, cam_class)
    if cam_layer is not None:
        predictor.check_layer(cam_layer, option="--cam-layer")
    if out:
        target = Path(os.path.realpath(check_out_file(out)))
        if any(Path(os.path.realpath(item)) == target for item in inputs):
            raise ConfigError(f"--out {display_path(out)}: is one of the inputs; name another file")
    if cam:
        check_cam_folder(cam, specs, inputs)


def check_cam_folder(cam: str | Path, specs: Sequence[str], inputs: Sequence[str]) -> None:
    """Refuse a `--cam` folder that holds an input, lies inside an input folder, or where a heat map's name is
    taken by a file pepx did not write."""
    folder = Path(cam)
    shown = display_path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--cam {shown}: is not a folder")
    roots = {Path(os.path.abspath(folder)), Path(os.path.realpath(folder))}
    for item in inputs:
        for path in (Path(os.path.abspath(item)), Path(os.path.realpath(item))):
            if any(path.is_relative_to(root) for root in roots):
                raise ConfigError(f"--cam {shown}: holds input {display_path(item)}: heat maps would be "
                                  "written among (or over) the films; choose a folder outside the inputs")
    for spec in specs:
        if Path(spec).is_dir():
            inside = [Path(os.path.abspath(spec)), Path(os.path.realpath(spec))]
            if any(root.is_relative_to(f) for root in roots for f in inside):
                raise ConfigError(f"--cam {shown}: lies inside the input folder {display_path(spec)} (a "
                                  "later run would read the heat maps as films); choose a folder outside it")
    for stem in cam_names(inputs):
        for target in (folder / (str(stem) + CAM_PNG), folder / (str(stem) + CAM_NPY)):
            if (target.exists() or target.is_symlink()) and not _ours(target):
                raise ConfigError(f"--cam {shown}: {display_path(target)} exists and was not written by "
                                  "pepx; choose an empty folder")


def _ours(target: Path) -> bool:
    """True when `target` is a regular file pepx wrote as a heat map (the .npy: beside such a PNG)."""
    name = target.name
    png = target if name.endswith(CAM_PNG) else target.with_name(name[: -len(CAM_NPY)] + CAM_PNG)
    if target.is_symlink() or not target.is_file() or png.is_symlink() or not png.is_file():
        return False
    try:
        with Image.open(png) as im:
            return im.format == "PNG" and im.info.get(CAM_MARK[0]) == CAM_MARK[1]
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------- Grad-CAM files
def cam_names(sources: Sequence[str]) -> list[Path]:
    """Output names (less `CAM_PNG` / `CAM_NPY`) mirroring each input's path, suffix included, below the
    inputs' common folder: `x/a.png` -> `x/a.png`, so `a.png`, `a.jpg` and `x/a.png`, `y/a.png` never meet."""
    paths = [Path(os.path.abspath(s)) for s in sources]
    if not paths:
        return []
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(common) for p in paths]


def write_cams(predictor: Predictor, preds: Sequence[Prediction], folder: str | Path,
               class_name: str | None = None, layer: str | None = None,
               alpha: float = 0.5) -> list[str | None]:
    """For each readable input: `NAME.cam.png` (the radiograph with the heat map of `class_name`, default the
    predicted class; marked as pepx's) and `NAME.cam.npy` (the raw map over the network's input, float32
    [S, S]). Returns each row's PNG path (None for error rows and films the gate rejected)."""
    folder = Path(folder)
    index = None if class_name is None else predictor.classes.index(class_name)
    ok = [p for p in preds if p.status == "ok" and p.label is not None]  # a rejected film has no class
    names = dict(zip([p.source for p in ok], cam_names([p.source for p in ok]), strict=True))
    info = PngImagePlugin.PngInfo()
    info.add_text(*CAM_MARK)
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
        png, npy = folder / (str(names[p.source]) + CAM_PNG), folder / (str(names[p.source]) + CAM_NPY)
        with atomic_path(png) as tmp:
            label = predictor.bundle.display.get(explanation.class_name, explanation.class_name)
            cam_picture(explanation, label, alpha=alpha).save(tmp, format="PNG", pnginfo=info)
        buffer = io.BytesIO()
        np.save(buffer, explanation.raw)
        with atomic_path(npy) as tmp:
            tmp.write_bytes(buffer.getvalue())
        written.append(str(png))
    return written


__all__ = ["CAM_NPY", "CAM_PNG", "cam_names", "check_outputs", "collect_inputs", "print_table", "write_cams",
           "write_predictions"]


def report(predictor: Predictor, preds: Sequence[Prediction], out: str | Path | None = None,
           cam: str | Path | None = None, cam_class: str | None = None,
           cam_layer: str | None = None, calibrated: bool = True) -> list[str]:
    """Write what `pepx predict` was asked for - every row to `out` (.csv / .json) or a table, and the
    Grad-CAM files into `cam` - and return the lines to print (`calibrated=False`: a run folder's predictor,
    whose probabilities are the network's softmax)."""
    n_ok = sum(p.status == "ok" for p in preds)
    if out:
        check_out_file(out)  # before any heat map is written
    cams = write_cams(predictor, preds, cam, cam_class, cam_layer) if cam else None
    bundle, names = predictor.bundle, predictor.bundle.display
    legend = flag_legend(predictor)
    if out:
        written = write_predictions(preds, out, {"cam": cams} if cams else None, predictor.classes, names)
        lines = [f"{bundle.id} {bundle.version}: wrote {len(preds)} rows to {display_path(written)} ({n_ok} "
                 f"predicted, {len(preds) - n_ok} unreadable)"]
    else:
        what = ("calibrated probabilities" if calibrated else
                "probabilities not calibrated: a run folder, `pepx export` makes a bundle")
        title = f"{bundle.id} {bundle.version}" if calibrated else bundle.id
        lines = [f"{title} ({what}; input gate {predictor.gate_status}; research use only)",
                 print_table(preds, names),
                 *caveat_lines(preds, names)]
    if legend and any(p.flagged for p in preds):
        lines.append(legend)
    return lines + ([f"Grad-CAM overlays and maps: {display_path(cam)}"] if cams else [])
