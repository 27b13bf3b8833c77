"""File makers of the hostile-input probe (issue 17): damaged DICOM, DICOM bombs, special files, bundles with
edited config.json. Every file is made here, by pydicom / Pillow / the OS: nothing is downloaded."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from fakes.images import make_dicom, ramp

#: A file name that is not valid UTF-8 (Latin-1 "café.png"), as Python spells it on a UTF-8 file system.
NON_UTF8 = os.fsdecode(b"caf\xe9.png")


def film(path: Path, seed: int = 0, size: int = 64) -> Path:
    """A small grey PNG/JPEG with some structure (not constant, so min-max scaling has a range)."""
    rng = np.random.default_rng(seed)
    arr = (ramp(size, size, top=200) + rng.integers(0, 50, (size, size))).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _base(rows: int, cols: int) -> tuple[FileMetaDataset, Dataset]:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, uid, "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return meta, ds


def _file(meta: FileMetaDataset, body: bytes) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue() + body


def deflated_dicom(path: Path, rows: int, cols: int, pixel_bytes: int | None = None) -> Path:
    """A Deflated Explicit VR Little Endian DICOM whose pixel data (zeros, `pixel_bytes`, default
    rows x cols x 2) is compressed as it streams: a 9000 x 9000 bomb is a 160 kB file."""
    meta, ds = _base(rows, cols)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n = rows * cols * 2 if pixel_bytes is None else pixel_bytes
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [comp.compress(body.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", n))]
    chunk = bytes(1 << 20)
    while n:
        k = min(n, len(chunk))
        parts.append(comp.compress(chunk[:k]))
        n -= k
    parts.append(comp.flush())
    path.write_bytes(_file(meta, b"".join(parts)))
    return path


def encapsulated_bomb(path: Path, rows: int, cols: int, frames: int) -> Path:
    """A JPEG Baseline DICOM declaring `frames` frames of rows x cols with one tiny fake JPEG fragment."""
    meta, ds = _base(rows, cols)
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(60) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def _text_as_ds(src: Path, dst: Path, tag: int, value: str, **more: object) -> Path:
    """Copy `src` with the DS element `tag` holding the non-numeric text `value` (pydicom refuses to write
    one, so it is written as LO and its VR patched to DS in the bytes)."""
    ds = pydicom.dcmread(src)
    for key, v in more.items():
        setattr(ds, key, v)
    ds.add_new(tag, "LO", value)
    ds.save_as(dst)
    data = dst.read_bytes()
    key = bytes([tag >> 16 & 0xFF, tag >> 24 & 0xFF, tag & 0xFF, tag >> 8 & 0xFF])
    assert data.count(key + b"LO") == 1
    dst.write_bytes(data.replace(key + b"LO", key + b"DS"))
    return dst


def damaged_dicoms(folder: Path) -> dict[str, Path]:
    """DICOM files that are damaged but have pixels (issue 17 item 2), and a good one."""
    folder.mkdir(parents=True, exist_ok=True)
    good = make_dicom(folder / "good.dcm", (ramp(48, 40) / 255 * 4095).round())
    empty_voi = pydicom.dcmread(good)
    empty_voi.VOILUTSequence = []
    empty_voi.save_as(folder / "empty_voi.dcm")
    no_desc = pydicom.dcmread(good)
    item = Dataset()
    item.add_new(0x00283006, "US", [0, 100, 4095])
    no_desc.VOILUTSequence = [item]
    no_desc.save_as(folder / "voi_no_descriptor.dcm")
    _text_as_ds(good, folder / "window_text.dcm", 0x00281050, "abc", WindowWidth=400)
    _text_as_ds(good, folder / "slope_text.dcm", 0x00281053, "x", RescaleIntercept=0)
    return {p.stem: p for p in sorted(folder.glob("*.dcm"))}


def special_folder(root: Path) -> Path:
    """`root/normal/`: a good film, a FIFO, a link to /dev/zero, a link loop, a broken link, a link to a
    folder, a film with a non-UTF-8 name; `root/COVID-19/same.png`: a link to the good film (one image under
    two labels)."""
    normal = root / "normal"
    film(normal / "good.png", 1)
    film(normal / NON_UTF8, 2)
    os.mkfifo(normal / "pipe.png")
    os.symlink("/dev/zero", normal / "zero.png")
    os.symlink("loop.png", normal / "loop.png")
    os.symlink("missing.png", normal / "broken.png")
    os.symlink("..", normal / "up")
    (root / "COVID-19").mkdir()
    os.symlink("../normal/good.png", root / "COVID-19" / "same.png")
    return root


def bundle_variant(source: Path, dest: Path, edit=None, raw: str | None = None) -> Path:
    """Copy the bundle `source` to `dest`, then `edit(config_dict, dest)` its config.json (or replace the
    file's text with `raw`)."""
    shutil.copytree(source, dest, symlinks=True)
    cfg_file = dest / "config.json"
    if raw is not None:
        cfg_file.write_text(raw)
    elif edit is not None:
        config = json.loads(cfg_file.read_text())
        edit(config, dest)
        cfg_file.write_text(json.dumps(config, indent=1))
    return dest


def set_path(keys: str, value: object):
    """An `edit` for `bundle_variant` setting the dotted entry `keys` to `value`."""
    def edit(config: dict, _dest: Path) -> None:
        *parents, last = keys.split(".")
        node = config
        for k in parents:
            node = node[k]
        node[last] = value
    return edit


def relink(name: str, target: str):
    """An `edit` replacing the bundle file `name` by a symbolic link to `target`."""
    def edit(_config: dict, dest: Path) -> None:
        (dest / name).unlink()
        os.symlink(target, dest / name)
    return edit


__all__ = ["NON_UTF8", "ExplicitVRLittleEndian", "bundle_variant", "damaged_dicoms", "deflated_dicom",
           "encapsulated_bomb", "film", "relink", "set_path", "special_folder"]
