"""Helpers shared by the adapters: label aliases, file lookup, reading tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pepx.data.errors import SourceError
from pepx.data.io import IMAGE_SUFFIXES
from pepx.fileio import file_problem, walk_files

#: Label spellings accepted by the folder and CSV adapters (lower-cased) -> pepx class.
LABEL_ALIASES: dict[str, str] = {
    "normal": "normal",
    "no finding": "normal",
    "healthy": "normal",
    "pneumonia": "pneumonia",
    "non-covid": "pneumonia",
    "non_covid": "pneumonia",
    "noncovid": "pneumonia",
    "non-covid pneumonia": "pneumonia",
    "pnemonia": "pneumonia",
    "covid-19": "COVID-19",
    "covid19": "COVID-19",
    "covid": "COVID-19",
    "covid_19": "COVID-19",
}


def map_label(value: object) -> str | None:
    """The pepx class of a label spelling, or None when unknown."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return LABEL_ALIASES.get(str(value).strip().lower())


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV as strings (ids like `0012` keep their zeros), with a clear error when unreadable."""
    problem = file_problem(path)
    if problem is not None:  # a FIFO would block the read for ever
        raise SourceError(f"{path}: {problem}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=True, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not a readable CSV ({e})") from None


def require_columns(df: pd.DataFrame, cols: tuple[str, ...], where: Path) -> None:
    """Raise `SourceError` naming the missing columns."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SourceError(f"{where}: missing column(s) {missing}; has {list(df.columns)}")


def index_files(root: Path) -> dict[str, list[Path]]:
    """Every image-suffixed file under `root`, by file name (for data sets whose folders vary by release)."""
    out: dict[str, list[Path]] = {}
    for p in walk_files(root):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            out.setdefault(p.name, []).append(p)
    return out


def pick(candidates: list[Path] | None, prefer: str | None, fallback: Path) -> Path:
    """The candidate inside a folder named `prefer` (train/test), else the first, else `fallback`."""
    if not candidates:
        return fallback
    if prefer:
        for c in candidates:
            if prefer.lower() in (part.lower() for part in c.parts[:-1]):
                return c
    return candidates[0]


def nz(value: object) -> object:
    """NA for empty strings / NaN, else the stripped string."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return pd.NA
    s = str(value).strip()
    return s if s else pd.NA
