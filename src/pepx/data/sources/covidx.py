"""COVIDx label files (COVID-Net, every published version).

Lines are `patient_id filename label [source]`, space-separated. v1-v5 have no source column
(`train_COVIDx3.txt`: `8 SARS-...-day9.jpeg pneumonia`), v6 on add it
(`test_COVIDx_CXR-3A.txt`: `419639-003251 MIDRC-...-0.png COVID-19 ricord`).
Some patient ids contain spaces, so lines are parsed from the right. The first release (March 2020,
`train_split.txt` / `test_split.txt`) labels pneumonia `viral` or `bacteria`: both map to pneumonia.

A folder (COVID-Net's `labels/`, or a data folder) holds many files; the newest **3-class** release is used,
its version parsed from the name, never sorted as text:

    train_split[_vN] < train_COVIDx[N] < train_COVIDx2 < ... < train_COVIDx9A < train_COVIDx_CXR-3A < ...

Files whose version cannot be parsed (`train_COVIDxSev.txt` with severity labels, `train_pnemunia.txt`,
`train_mntf_sev.txt`), binary releases (`negative|positive`: `train_COVIDx9B.txt`, CXR-3B) and files without
3-class labels are never chosen; the choice is logged. `val.txt` / `val_<version>.txt` beside train and test
is read as the validation split (`covidx_split=val`). `covidx:FILE` reads that one file; a binary, severity
or non-text file (an image given by mistake) is refused with the reason.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from pepx.data.errors import SourceError
from pepx.data.io import IMAGE_SUFFIXES
from pepx.data.manifest import Problem
from pepx.data.sources.common import index_files, pick

log = logging.getLogger("pepx.data")

#: Label spellings of every 3-class release (lower-cased) -> pepx class.
THREE_CLASS = {"normal": "normal", "pneumonia": "pneumonia", "covid-19": "COVID-19", "viral": "pneumonia",
               "bacteria": "pneumonia"}
BINARY = {"negative", "positive"}
#: `train|val|test[_version].txt`
LABEL_FILE = re.compile(r"(?i)^(?P<part>train|val|test)(?:_(?P<version>.+))?\.txt$")
_SAMPLE_LINES = 5000


def parse_line(line: str) -> tuple[str, str, str, str | None] | None:
    """(patient_id, filename, label, source|None) of one label-file line, or None when malformed."""
    tok = line.split()
    if len(tok) < 3:
        return None
    known = set(THREE_CLASS) | BINARY
    if tok[-1].lower() in known or len(tok) == 3:
        pid, fname, label, source = " ".join(tok[:-2]), tok[-2], tok[-1], None
    else:
        pid, fname, label, source = " ".join(tok[:-3]), tok[-3], tok[-2], tok[-1]
    if not pid:
        return None
    return pid, fname, label, source


def parse_version(version: str | None) -> tuple[int, int, str] | None:
    """Sort key of the version part of a label file name, or None when it is not a COVIDx release name.

    ``None`` (bare ``train.txt``) < ``split`` / ``split_vN`` (March 2020) < ``COVIDx`` (v1), ``COVIDx2`` ...
    ``COVIDx9A`` < ``COVIDx_CXR-3A`` ...; within one number the letter orders (A < B).
    """
    if not version:
        return (0, 0, "")
    m = re.fullmatch(r"(?i)split(?:_v(\d+))?", version)
    if m:
        return (1, int(m.group(1) or 1), "")
    m = re.fullmatch(r"(?i)covidx(\d*)([a-z]?)", version)
    if m:
        return (2, int(m.group(1) or 1), m.group(2).upper())
    m = re.fullmatch(r"(?i)covidx_cxr-(\d+)([a-z]?)", version)
    if m:
        return (3, int(m.group(1)), m.group(2).upper())
    return None


def require_text(path: Path) -> None:
    """Raise `SourceError` unless ``path`` looks like a text label file (not an image or other binary)."""
    if path.suffix and path.suffix.lower() in IMAGE_SUFFIXES:
        raise SourceError(f"covidx: {path} is an image ({path.suffix}), not a label file; give the folder or "
                          "its train/test .txt label file")
    with open(path, "rb") as fh:
        head = fh.read(8192)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        text = head[: err.start].decode("utf-8") if err.start > len(head) - 4 else None
    if text is None or "\x00" in text:
        raise SourceError(f"covidx: {path} is not a text label file (binary content); give the folder or its "
                          "train/test .txt label file")


def file_labels(path: Path) -> set[str]:
    """The (lower-cased) labels of the first lines of a label file."""
    labels = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            parsed = parse_line(line)
            if parsed:
                labels.add(parsed[2].lower())
            if i >= _SAMPLE_LINES:
                break
    return labels


def _kind(labels: set[str]) -> str:
    """``3-class`` (some 3-class label, no binary one; stray labels are reported row by row), ``binary`` or a
    description of what the labels are."""
    if labels & set(THREE_CLASS) and not labels & BINARY:
        return "3-class"
    if labels and labels <= BINARY:
        return "binary"
    return f"labels {', '.join(sorted(labels)[:4]) or 'none'}"


def _refuse_unless_three_class(path: Path) -> None:
    """Binary files and files with no 3-class label are refused (a few unknown labels among 3-class ones are
    reported row by row instead)."""
    kind = _kind(file_labels(path))
    if kind == "binary":
        raise SourceError(
            f"covidx: {path.name} is a binary COVIDx label file (negative/positive); pepx has 3 classes "
            "(normal / pneumonia / COVID-19): use that release's 3-class file (e.g. train_COVIDx9A.txt, "
            "test_COVIDx9A.txt, train_COVIDx_CXR-3A.txt)"
        )
    if kind != "3-class":
        raise SourceError(f"covidx: {path.name} is not a 3-class COVIDx label file ({kind}); pepx reads "
                          "normal / pneumonia / COVID-19 labels")


def label_files(path: Path) -> list[Path]:
    """The label files a `covidx:` spec names: one file, or the newest 3-class release in a folder."""
    if path.is_file():
        require_text(path)
        return [path]
    if not path.is_dir():
        raise SourceError(f"covidx: {path} is neither a label file nor a folder")
    versions: dict[tuple[int, int, str], list[Path]] = {}
    skipped: list[str] = []
    for f in sorted(path.glob("*.txt")):
        m = LABEL_FILE.match(f.name)
        if not m:
            continue
        key = parse_version(m.group("version"))
        if key is None:
            skipped.append(f"{f.name} (not a COVIDx release name)")
            continue
        versions.setdefault(key, []).append(f)
    usable = {}
    for key, files in versions.items():
        kinds = {f.name: _kind(file_labels(f)) for f in files}
        bad = [f"{n} ({k})" for n, k in kinds.items() if k != "3-class"]
        if bad:
            skipped += bad
        else:
            usable[key] = files
    if not usable:
        found = "; ".join(skipped) if skipped else "no train*/val*/test* .txt files"
        raise SourceError(f"covidx: no 3-class COVIDx label files in {path} ({found})")
    chosen = max(usable)
    names = ", ".join(f.name for f in usable[chosen])
    if len(usable) > 1 or skipped:
        log.warning("covidx: using %s, the newest 3-class release in %s (also there: %s; name a file to "
                    "choose another)", names, path, "; ".join(
                        [*(f.name for k in sorted(usable) if k != chosen for f in usable[k]), *skipped]))
    else:
        log.info("covidx: using %s", names)
    return usable[chosen]


def load_covidx(path: Path, problems: list[Problem]) -> list[dict]:
    """Rows of one COVIDx label file or folder (images in `<folder>/<train|val|test>/<filename>`, or found
    anywhere below the folder)."""
    files = label_files(path)
    root = files[0].parent
    for lf in files:
        _refuse_unless_three_class(lf)
    lookup = index_files(root)
    rows: list[dict] = []
    for lf in files:
        name = lf.name.lower()
        part = "test" if name.startswith("test") else "val" if name.startswith("val") else "train"
        with open(lf, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                parsed = parse_line(line)
                if parsed is None:
                    problems.append(Problem(str(lf), lineno, f"malformed line: {line.strip()[:80]!r}"))
                    continue
                pid, fname, label, source = parsed
                fpath = pick(lookup.get(fname), part, root / part / fname)
                rows.append(
                    {
                        "path": os.path.abspath(fpath),
                        "label": THREE_CLASS.get(label.lower(), label),
                        "patient_id": pid,
                        "source": source or "covidx",
                        "age_group": None,
                        "view": None,
                        "patient_id_kind": "source_patient_id",
                        "covidx_split": part,
                        "_row": lineno,
                        "label_file": lf.name,
                    }
                )
    return rows
