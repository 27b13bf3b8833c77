"""`load_source(spec)`: one entry point for every supported data-set format."""

from __future__ import annotations

import logging
from pathlib import Path

from pepx.data.cache import cache_root
from pepx.data.errors import SourceError
from pepx.data.manifest import Problem, SourceResult, finalize
from pepx.data.sources.cohen import MAPPINGS, load_cohen
from pepx.data.sources.coronahack import load_coronahack
from pepx.data.sources.covidx import load_covidx
from pepx.data.sources.tabular import load_csv, load_folder
from pepx.data.synthetic import SyntheticSpec, ensure_synthetic

log = logging.getLogger("pepx.data")

ADAPTERS = {
    "covidx": load_covidx,
    "coronahack": load_coronahack,
    "cohen": load_cohen,
    "folder": load_folder,
    "csv": load_csv,
}
FORMATS = (*ADAPTERS, "synthetic")
#: Options an adapter takes after its path (`cohen:DIR?mapping=covidnet`), with their allowed values.
OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {"cohen": {"mapping": MAPPINGS}}
#: Smallest synthetic image side: the generator's anatomy needs a few pixels per rib.
MIN_SYNTHETIC_SIZE = 16
#: Largest synthetic set: images per class and side (a typo must not fill the disk or the memory).
MAX_SYNTHETIC = {"n_per_class": 100_000, "size": 2048, "seed": 2**32 - 1}


def split_options(fmt: str, rest: str) -> tuple[Path, dict[str, str]]:
    """``DIR?key=value&key=value`` -> (path, options), checked against `OPTIONS` (a path that exists with
    its ``?`` is taken whole)."""
    path, query = Path(rest).expanduser(), ""
    if "?" in rest and not path.exists():
        head, _, query = rest.rpartition("?")
        path = Path(head).expanduser()
    options: dict[str, str] = {}
    allowed = OPTIONS.get(fmt, {})
    for item in filter(None, (o.strip() for o in query.replace("&", ",").split(","))):
        key, eq, value = (part.strip() for part in item.partition("="))
        if key not in allowed or not eq:
            takes = ", ".join(f"{k}=" for k in allowed) or "no options"
            raise SourceError(f"{fmt}: unknown option {item!r}; {fmt} takes {takes}")
        if value not in allowed[key]:
            raise SourceError(f"{fmt}: {key}={value!r}; choose one of {', '.join(allowed[key])}")
        options[key] = value
    return path, options


def source_path(spec: str) -> Path | None:
    """The file or folder a `FORMAT:PATH[?options]` spec reads (None for `synthetic` or a bad spec)."""
    fmt, sep, rest = str(spec).strip().partition(":")
    if fmt.lower() not in ADAPTERS or not sep or not rest:
        return None
    return split_options(fmt.lower(), rest)[0]


def parse_synthetic(spec: str) -> SyntheticSpec:
    """`synthetic` or `synthetic:n_per_class=100,size=128,seed=0,confounded=1` -> SyntheticSpec."""
    _, _, opts = spec.partition(":")
    kwargs: dict[str, int | bool] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or key not in ("n_per_class", "size", "seed", "confounded"):
            raise SourceError(f"synthetic: bad option {item!r}; use n_per_class=, size=, seed=, confounded=")
        if key == "confounded":
            kwargs[key] = val.strip().lower() in ("1", "true", "yes", "on")
        else:
            try:
                kwargs[key] = int(val)
            except ValueError:
                raise SourceError(f"synthetic: {key} must be an integer, got {val!r}") from None
    minimum = {"n_per_class": 1, "size": MIN_SYNTHETIC_SIZE, "seed": 0}
    for key, low in minimum.items():
        if key in kwargs and kwargs[key] < low:
            raise SourceError(f"synthetic: {key} must be >= {low}, got {kwargs[key]}")
        if key in kwargs and kwargs[key] > MAX_SYNTHETIC[key]:
            raise SourceError(f"synthetic: {key} must be <= {MAX_SYNTHETIC[key]}, got {kwargs[key]}")
    return SyntheticSpec(**kwargs)  # type: ignore[arg-type]


def load_source(spec: str, check_files: bool = True) -> SourceResult:
    """Read a data source into a manifest; `spec` is `FORMAT:PATH[?option=value]` or
    `synthetic[:key=val,...]`.

    Rows with unknown labels, missing files, or a patient under two classes are left out and listed in
    `.problems` (path, row, reason); the rest form `.manifest`. Raises `SourceError` when the source
    is unusable (unknown format, missing label file, binary COVIDx labels).
    """
    spec = str(spec).strip()
    fmt, sep, rest = spec.partition(":")
    fmt = fmt.lower()
    if fmt == "synthetic":
        folder = ensure_synthetic(parse_synthetic(spec), cache_root())
        result = load_source(f"csv:{folder / 'metadata.csv'}", check_files=check_files)
        result.spec = spec
        return result
    if fmt not in ADAPTERS or not sep or not rest:
        raise SourceError(
            f"bad data source {spec!r}: use FORMAT:PATH with FORMAT one of {', '.join(ADAPTERS)}, "
            "or `synthetic`"
        )
    path, options = split_options(fmt, rest)
    if not path.exists():
        raise SourceError(f"{fmt}: {path} does not exist")
    problems: list[Problem] = []
    rows = ADAPTERS[fmt](path, problems, **options)
    manifest = finalize(rows, problems, check_files=check_files)
    result = SourceResult(manifest=manifest, problems=problems, spec=spec)
    if problems:
        log.warning("%s: %s", spec, result.summary())
    return result
