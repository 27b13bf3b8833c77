"""Images made in the tests: arrays, PNGs, minimal DICOM (pydicom), PNG bombs (a header that lies)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def ramp(h: int = 40, w: int = 32, top: int = 255) -> np.ndarray:
    """An h x w gradient from 0 to `top` (rounded), row by row."""
    return (np.linspace(0, 1, h * w).reshape(h, w) * top).round()


def make_dicom(
    path: Path,
    arr: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    window: tuple[float, float] | None = None,
    voi_lut: np.ndarray | None = None,
    pixels: bool = True,
) -> Path:
    """A minimal valid DICOM (secondary capture) made with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, uid, "DX"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, 12]  # 12-bit output entries
        item.add_new(0x00283006, "US", [int(v) for v in voi_lut])  # LUTData as US (OW needs bytes)
        ds.VOILUTSequence = [item]
    if pixels:
        ds.PixelData = arr.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def png_bytes(arr: np.ndarray) -> bytes:
    """`arr` (0-255) as the bytes of an 8-bit PNG."""
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (30000 x 30000 by default)."""
    data = bytearray(png_bytes(ramp()))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def png(path: Path, value: int = 100) -> Path:
    """A flat 16 x 16 grey PNG at `path` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)
    return path


def radiograph(h: int = 90, w: int = 70, seed: int = 0) -> np.ndarray:
    """A smooth film-like float32 image in [0, 1] with a little noise, different for each seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.5 + 0.3 * np.sin(yy / 7.0 + seed) * np.cos(xx / 5.0) + 0.1 * rng.random((h, w))
    return np.clip(img, 0, 1).astype(np.float32)


def save_png(path: Path, img: np.ndarray) -> Path:
    """`img` (floats in [0, 1]) saved as an 8-bit PNG at `path`."""
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    return path
