"""Real images that are not frontal chest X-rays (`../shared/data/cxr-ood`: CT slices, lateral films,
photographs; `metadata.csv` with `filename, kind, ...`) and their fixed split into a development part (which
`pepx gate fit --ood` may train on) and a test part (only ever scored).

The split is grouped, so that panels of one published figure or films of one patient never straddle it: the
group of a file is its Cohen case or patient number (`16630_2_1` -> `16630`, `000002-11-b` -> `000002`,
`covid-19-caso-70-1-L` -> `caso-70`), the article of a figure panel (`kjr-21-e24-g001-l-b` -> `kjr-21-e24`,
`1-s2.0-S0929664620300449-gr3_lrg-a` -> `1-s2.0-S0929664620300449`), else the file's own name. Within each
kind, groups are ordered by the sha1 of their key and taken into the test part until it holds at least
`TEST_SHARE` of the kind's images; the rest is the development part. The split depends on nothing but the
file names, so it is the same on every machine and for every bundle.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from pepx.errors import ConfigError

#: Share of each kind's images (at least) in the test part.
TEST_SHARE = 0.6
_GROUP_RULES = (
    re.compile(r"^(\d{5})_"),  # Cohen case number: 16630_2_1
    re.compile(r"^(\d{6})-"),  # Cohen patient folder: 000002-11-b
    re.compile(r"(caso-\d+|pneumonia-\d+)"),  # covid-19-caso-70-1-L, covid-19-pneumonia-14-L
    re.compile(r"^(1-s2\.0-S\d+)"),  # Elsevier article: 1-s2.0-S0929664620300449-gr3_lrg-a
    re.compile(r"^([a-z]+-\d+-e\d+)-"),  # Korean journals' article: kjr-21-e24-g001-l-b
    re.compile(r"^(.*?)(?:-\d+)?$"),  # ..._jumbo-1 -> ..._jumbo; anything else: itself
)


def group_of(filename: str) -> str:
    """The group (case, patient or article) of a cxr-ood file name (see the module docstring)."""
    stem = Path(filename).stem
    stem = stem.split("_", 1)[1] if "_" in stem and stem.split("_", 1)[0].isalpha() else stem
    for rule in _GROUP_RULES:
        match = rule.search(stem)
        if match:
            return match.group(1)
    return stem  # pragma: no cover - the last rule always matches


def read_ood(metadata: str | Path) -> pd.DataFrame:
    """cxr-ood's `metadata.csv` as a frame: `path` (absolute), `kind`, `group`, `part` (dev / test)."""
    metadata = Path(metadata)
    if metadata.is_dir():
        metadata = metadata / "metadata.csv"
    if not metadata.is_file():
        raise ConfigError(f"{metadata}: no such file (an out-of-distribution set's metadata.csv, with "
                          "filename and kind columns)")
    frame = pd.read_csv(metadata)
    missing = {"filename", "kind"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{metadata}: lacks column(s) {', '.join(sorted(missing))}")
    frame = frame[["filename", "kind"]].copy()
    frame["path"] = [str((metadata.parent / f).resolve()) for f in frame["filename"]]
    frame["group"] = [f"{k}/{group_of(f)}" for k, f in zip(frame["kind"], frame["filename"], strict=True)]
    frame["part"] = "dev"
    for _, rows in frame.groupby("kind"):
        sizes = rows.groupby("group").size()
        order = sorted(sizes.index, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
        taken = 0
        for group in order:
            if taken >= TEST_SHARE * len(rows):
                break
            frame.loc[frame["group"] == group, "part"] = "test"
            taken += int(sizes[group])
    return frame.reset_index(drop=True)


__all__ = ["TEST_SHARE", "group_of", "read_ood"]
