"""pepx.data image reading: formats, DICOM (pydicom-made fixtures) and a folder of bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes.images import bomb_png, make_dicom, png_bytes, ramp
from pepx.cli import main
from pepx.data import ImageReadError, load_source, read_image
from pepx.data.inspect import decode_all

pytestmark = pytest.mark.usefixtures("pepx_cache")


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
def test_png_modes_read_as_gray(tmp_path, mode):
    src = Image.fromarray(ramp().astype(np.uint8))
    im = src.convert("P") if mode == "P" else src.convert(mode)
    im.save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.shape == (40, 32) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert np.allclose(out, ramp() / 255, atol=0.03)


def test_png_16bit_and_jpeg(tmp_path):
    Image.fromarray(ramp(top=65535).astype(np.uint16)).save(tmp_path / "x16.png")
    assert np.allclose(read_image(tmp_path / "x16.png"), ramp(top=65535) / 65535, atol=1e-4)
    Image.fromarray(ramp().astype(np.uint8)).convert("RGB").save(tmp_path / "x.jpg", quality=95)
    assert np.allclose(read_image(tmp_path / "x.jpg"), ramp() / 255, atol=0.05)


def test_dicom_16bit_scaled_by_bits_stored(tmp_path):
    arr = ramp(top=4095)
    out = read_image(make_dicom(tmp_path / "a.dcm", arr, bits_stored=12))
    assert np.allclose(out, arr / 4095, atol=1e-4)
    full = ramp(top=65535)
    out16 = read_image(make_dicom(tmp_path / "b.dcm", full, bits_stored=16))
    assert np.allclose(out16, full / 65535, atol=1e-4)


def test_dicom_monochrome1_inverted(tmp_path):
    arr = ramp(top=4095)
    out = read_image(make_dicom(tmp_path / "m1.dcm", arr, photometric="MONOCHROME1"))
    assert np.allclose(out, 1 - arr / 4095, atol=1e-4)
    assert out[0, 0] == pytest.approx(1.0) and out[-1, -1] == pytest.approx(0.0)


def test_dicom_window_and_voi_lut(tmp_path):
    arr = ramp(top=4095)
    out = read_image(make_dicom(tmp_path / "w.dcm", arr, window=(2048, 1024)))
    assert out[0, 0] == 0 and out[-1, -1] == pytest.approx(1.0)  # saturated outside the window
    mid = (arr > 1700) & (arr < 2300)
    assert np.all(np.diff(out[mid]) >= 0)
    lut = np.sqrt(np.arange(4096) / 4095) * 4095  # a gamma-like VOI LUT, 12-bit output
    out2 = read_image(make_dicom(tmp_path / "l.dcm", arr, voi_lut=lut.astype(int)))
    assert np.allclose(out2, lut.astype(int)[arr.astype(int)] / 4095, atol=1e-3)


def test_dicom_without_pixels_is_a_read_error(tmp_path):
    p = make_dicom(tmp_path / "n.dcm", ramp(top=4095), pixels=False)
    with pytest.raises(ImageReadError, match="no pixel data") as e:
        read_image(p)
    assert e.value.path == str(p)


# --------------------------------------------------------------------------- bad files
def make_bad_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """normal/ with good images of many formats and >= 10 kinds of bad file; returns (good, bad)."""
    d = root / "normal"
    d.mkdir(parents=True)
    good = []
    for name, mode in [
        ("g_l.png", "L"),
        ("g_rgb.png", "RGB"),
        ("g_rgba.png", "RGBA"),
        ("g_p.png", "P"),
        ("g_rgb.jpg", "RGB"),
        ("g.bmp", "L"),
        ("g.tif", "L"),
    ]:
        im = Image.fromarray(ramp().astype(np.uint8))
        (im.convert("P") if mode == "P" else im.convert(mode)).save(d / name)
        good.append(d / name)
    Image.fromarray(ramp(top=65535).astype(np.uint16)).save(d / "g16.png")
    good.append(d / "g16.png")
    good.append(make_dicom(d / "g.dcm", ramp(top=4095)))
    png, jpg = png_bytes(ramp()), (d / "g_rgb.jpg").read_bytes()
    bad = {
        "empty.png": b"",
        "truncated.png": png[: len(png) // 2],
        "text.png": b"this is not an image\n" * 10,
        "page.jpg": b"<html><body>404 Not Found</body></html>",
        "truncated.jpg": jpg[: len(jpg) // 3],
        "bomb.png": bomb_png(),
        "bad_crc.png": png[:40] + bytes(b ^ 0xFF for b in png[40:60]) + png[60:],
        "tiny.png": png_bytes(np.zeros((1, 1))),
        "garbage.dcm": b"\x00" * 200 + b"not dicom",
        "random.bmp": np.random.default_rng(0).integers(0, 255, 300, dtype=np.uint8).tobytes(),
    }
    for name, data in bad.items():
        (d / name).write_bytes(data)
    bad_paths = [d / n for n in bad]
    bad_paths.append(make_dicom(d / "nopixels.dcm", ramp(top=4095), pixels=False))
    (d / "broken_link.png").symlink_to(d / "does-not-exist.png")
    bad_paths.append(d / "broken_link.png")
    (d / "notes.txt").write_text("scanner notes")
    return good, bad_paths


def test_bad_files_each_reported_good_ones_read(tmp_path, capsys):
    good, bad = make_bad_folder(tmp_path / "mixed")
    assert len(bad) >= 10
    res = load_source(f"folder:{tmp_path / 'mixed'}", check_files=False)
    failures, n = decode_all(res.manifest)
    failed = {f.path: f.reason for f in failures}
    listed = {str(Path(p)) for p in res.manifest["path"]}
    for b in bad:
        key = str(b.parent.resolve() / b.name) if b.is_symlink() else str(b.resolve())
        assert key in failed or key not in listed, b
        assert key in failed, f"{b.name} not reported"
        assert failed[key]  # a reason
    for g in good:
        assert str(g.resolve()) not in failed, f"good file {g.name} failed: {failed.get(str(g.resolve()))}"
    assert n - len(failures) == len(good)
    assert any("notes.txt" in p.path for p in res.problems)
    # each reason says what is wrong
    assert "0 bytes" in failed[str((tmp_path / "mixed/normal/empty.png").resolve())]
    assert "pixel" in failed[str((tmp_path / "mixed/normal/bomb.png").resolve())]
    # the CLI lists every bad file and still exits 0
    assert main(["data", "inspect", f"folder:{tmp_path / 'mixed'}"]) == 0
    out = capsys.readouterr().out
    for b in bad:
        assert b.name in out


# --------------------------------------------------------------------------- bytes in memory
def test_bytes_decode_like_files_and_name_the_upload(tmp_path):
    from pepx.data import ImageTooLargeError, read_image_bytes

    good, bad = make_bad_folder(tmp_path / "mixed")
    for p in good:  # every format: same array from the bytes as from the file, whatever the name says
        assert np.array_equal(read_image_bytes(p.read_bytes(), "upload"), read_image(p)), p.name
    dcm = next(p for p in good if p.suffix == ".dcm")
    assert np.array_equal(read_image_bytes(dcm.read_bytes(), "x.png", dicom=True), read_image(dcm))
    for p in bad:
        if p.is_symlink():
            continue
        with pytest.raises(ImageReadError) as e:
            read_image_bytes(p.read_bytes(), f"up/{p.name}")
        assert e.value.path == f"up/{p.name}" and e.value.reason
    with pytest.raises(ImageTooLargeError, match="pixels"):
        read_image_bytes(bomb_png(), "bomb.png")
    with pytest.raises(ImageTooLargeError):  # the file reader refuses it the same way
        read_image(tmp_path / "mixed/normal/bomb.png")
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image_bytes((tmp_path / "mixed/normal/nopixels.dcm").read_bytes(), "n.dcm")
