"""COVIDx label files (COVID-Net, every published version).

Lines are `patient_id filename label [source]`, space-separated. v1-v5 have no source column
(`train_COVIDx3.txt`: `8 SARS-...-day9.jpeg pneumonia`), v6 on add it
(`test_COVIDx_CXR-3A.txt`: `419639-003251 MIDRC-...-0.png COVID-19 ricord`).
Some patient ids contain spaces, so lines are parsed from the right. The `B` versions
(`train_COVIDx9B.txt`, CXR-3B) are binary (`negative|positive`) and are refused for 3-class work.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from pepx.data.errors import SourceError
from pepx.data.manifest import Problem
from pepx.data.sources.common import index_files, pick

log = logging.getLogger("pepx.data")

THREE_CLASS = {"normal": "normal", "pneumonia": "pneumonia", "covid-19": "COVID-19"}
BINARY = {"negative", "positive"}


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


def label_files(path: Path) -> list[Path]:
    """The label files a `covidx:` spec names: one file, or the newest train/test pair in a folder."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SourceError(f"covidx: {path} is neither a label file nor a folder")
    files = sorted(p for p in path.glob("*.txt") if re.match(r"(?i)(train|test)", p.name))
    if not files:
        raise SourceError(f"covidx: no train*/test* label .txt files in {path}")
    versions: dict[str, list[Path]] = {}
    for f in files:
        versions.setdefault(re.sub(r"(?i)^(train|test)_?", "", f.stem), []).append(f)
    if len(versions) > 1:
        three = {v: fs for v, fs in versions.items() if not _is_binary_file(fs[0])}
        chosen = sorted(three or versions)[-1]
        log.warning(
            "covidx: several label versions in %s (%s); using %s (name a file to choose)",
            path,
            sorted(versions),
            chosen,
        )
        return versions[chosen]
    return next(iter(versions.values()))


def _is_binary_file(path: Path) -> bool:
    labels = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            parsed = parse_line(line)
            if parsed:
                labels.add(parsed[2].lower())
            if i > 5000:
                break
    return bool(labels) and labels <= BINARY


def load_covidx(path: Path, problems: list[Problem]) -> list[dict]:
    """Rows of one COVIDx label file or folder (images in `<folder>/<train|test>/<filename>`)."""
    files = label_files(path)
    root = files[0].parent
    lookup = index_files(root)
    rows: list[dict] = []
    for lf in files:
        if _is_binary_file(lf):
            raise SourceError(
                f"covidx: {lf.name} is a binary COVIDx label file (negative/positive); pepx has 3 classes "
                "(normal / pneumonia / COVID-19): use that release's 3-class file (e.g. train_COVIDx9A.txt, "
                "test_COVIDx9A.txt, train_COVIDx_CXR-3A.txt)"
            )
        part = "test" if lf.name.lower().startswith("test") else "train"
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
