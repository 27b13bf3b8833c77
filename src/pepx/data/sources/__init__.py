"""`load_source(spec)`: one entry point for every supported data-set format."""

from __future__ import annotations

import logging
from pathlib import Path

from pepx.data.errors import SourceError
from pepx.data.manifest import Problem, SourceResult, finalize
from pepx.data.sources.cohen import load_cohen
from pepx.data.sources.coronahack import load_coronahack
from pepx.data.sources.covidx import load_covidx
from pepx.data.sources.tabular import load_csv, load_folder

log = logging.getLogger("pepx.data")

ADAPTERS = {
    "covidx": load_covidx,
    "coronahack": load_coronahack,
    "cohen": load_cohen,
    "folder": load_folder,
    "csv": load_csv,
}
FORMATS = (*ADAPTERS, "synthetic")


def parse_synthetic(spec: str):
    """`synthetic` or `synthetic:n_per_class=100,size=128,seed=0,confounded=1` -> SyntheticSpec."""
    from pepx.data.synthetic import SyntheticSpec

    _, _, opts = spec.partition(":")
    kwargs: dict[str, object] = {}
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
    return SyntheticSpec(**kwargs)


def load_source(spec: str, check_files: bool = True) -> SourceResult:
    """Read a data source into a manifest; `spec` is `FORMAT:PATH` or `synthetic[:key=val,...]`.

    Rows with unknown labels, missing files, or a patient under two classes are left out and listed in
    `.problems` (path, row, reason); the rest form `.manifest`. Raises `SourceError` when the source
    is unusable (unknown format, missing label file, binary COVIDx labels).
    """
    spec = str(spec).strip()
    fmt, sep, rest = spec.partition(":")
    fmt = fmt.lower()
    if fmt == "synthetic":
        from pepx.data.cache import cache_root
        from pepx.data.synthetic import ensure_synthetic

        folder = ensure_synthetic(parse_synthetic(spec), cache_root())
        result = load_source(f"csv:{folder / 'metadata.csv'}", check_files=check_files)
        result.spec = spec
        return result
    if fmt not in ADAPTERS or not sep or not rest:
        raise SourceError(
            f"bad data source {spec!r}: use FORMAT:PATH with FORMAT one of {', '.join(ADAPTERS)}, "
            "or `synthetic`"
        )
    path = Path(rest).expanduser()
    if not path.exists():
        raise SourceError(f"{fmt}: {path} does not exist")
    problems: list[Problem] = []
    rows = ADAPTERS[fmt](path, problems)
    manifest = finalize(rows, problems, check_files=check_files)
    result = SourceResult(manifest=manifest, problems=problems, spec=spec)
    if problems:
        log.warning("%s: %s", spec, result.summary())
    return result
