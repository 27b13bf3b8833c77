"""Hostile probe, part 4 (issue 17): DICOM that is damaged but has pixels (read, the broken part skipped with
a warning) and DICOM bombs (refused from the header, before decompression, within one pixel budget), through
`pepx predict`, `pepx data inspect` and `read_image`."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hostile_kit import Case, fail, run_case
from hostile_make import damaged_dicoms, deflated_dicom, encapsulated_bomb

from fakes.bundles import make_bundle
from pepx.data import read_image
from pepx.data.errors import ImageReadError, ImageTooLargeError

DAMAGED = {"empty_voi": "VOILUTSequence", "voi_no_descriptor": "LUTDescriptor",
           "window_text": "WindowCenter", "slope_text": "RescaleSlope"}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hostile_dicom")
    make_bundle(root / "bundle")
    damaged_dicoms(root / "dicom" / "normal")
    (root / "bomb").mkdir()
    deflated_dicom(root / "bomb" / "deflate.dcm", 9000, 9000)
    encapsulated_bomb(root / "bomb" / "frames.dcm", 4096, 4096, 100_000)
    deflated_dicom(root / "bomb" / "fat.dcm", 64, 64, pixel_bytes=4_000_000)
    return root


def _warned(word: str):
    def check(ws, status, out, err) -> None:
        assert "skipped" in out and word in out, out
    return check


CASES = [Case(f"predict-{name}", ["predict", f"{{ws}}/dicom/normal/{name}.dcm", "--model", "{ws}/bundle"],
              status=0, check=_warned(word)) for name, word in DAMAGED.items()]
CASES += [
    Case("predict-deflate-bomb", ["predict", "{ws}/bomb/deflate.dcm", "--model", "{ws}/bundle"],
         stderr_lines=2, message="decompression bomb"),
    Case("predict-frames-bomb", ["predict", "{ws}/bomb/frames.dcm", "--model", "{ws}/bundle"],
         stderr_lines=2, message="decompression bomb"),
    Case("predict-damaged-folder", ["predict", "{ws}/dicom", "--model", "{ws}/bundle", "--out",
                                    "{ws}/out/dicom.csv"], status=0, outputs=["out"]),
    Case("inspect-damaged-folder", ["data", "inspect", "folder:{ws}/dicom"], status=0,
         message="5 decodable, 0 undecodable"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_case(ws, capsys, monkeypatch, case):
    monkeypatch.delenv("PEPX_DEBUG", raising=False)
    run_case(case, ws, capsys)


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged_dicom_reads_like_the_good_one_less_the_broken_part(ws, name):
    """The broken VOI / modality entry is skipped: the pixels come out as the good file's (same ramp)."""
    good = read_image(ws / "dicom" / "normal" / "good.dcm")
    try:
        got = read_image(ws / "dicom" / "normal" / f"{name}.dcm")
    except ImageReadError as err:
        fail("wrong", f"refused: {err}")
    except Exception as err:  # noqa: BLE001 - the probe's traceback
        fail("traceback", f"{type(err).__name__}: {err}")
    if got.shape != good.shape or np.abs(got - good).max() > 1e-6:
        fail("wrong", f"pixels differ from the good file's by {np.abs(got - good).max():.3g}")


@pytest.mark.parametrize("name, max_pixels", [("deflate.dcm", None), ("frames.dcm", None),
                                              ("fat.dcm", 250_000)])
def test_dicom_bombs_are_refused_before_decompression(ws, name, max_pixels):
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    tracemalloc.start()
    try:
        read_image(ws / "bomb" / name, **kwargs)
        error: Exception | None = None
    except Exception as err:  # noqa: BLE001
        error = err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if peak > 32e6:
        fail("security", f"{peak / 1e6:.0f} MB decoded before the refusal ({error})")
    if not isinstance(error, ImageTooLargeError):
        fail("wrong", f"{type(error).__name__}: {error}")
