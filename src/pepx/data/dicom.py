"""Reading one DICOM image (pydicom) into a grayscale float array, within a pixel budget, past damage.

- **Budget first.** Rows x Columns x frames x samples x bytes per sample is checked against the pixel budget
  (`pepx.data.budget`) before any pixel data is decompressed, and only the first frame is decoded.
  A Deflated transfer syntax compresses the whole data set, header included: it is inflated in two bounded
  steps (the header, then exactly what the header says the pixels need), so a 160 kB file that inflates to
  gigabytes is refused after at most a megabyte.
- **Damage skipped, not fatal.** A broken modality rescale (non-numeric RescaleSlope / Intercept), VOI LUT
  (an empty VOILUTSequence, an item without LUTDescriptor or LUTData) or window (non-numeric WindowCenter /
  WindowWidth) is skipped with a warning on the `pepx.data` logger, and the pixels are read without it.
  Anything else unreadable is an `ImageReadError` naming the file.

Hand-written around pydicom because pydicom inflates a deflated file whole before reading a tag, and raises
plain TypeError / IndexError on damaged VOI entries.
"""

from __future__ import annotations

import io
import logging
import math
import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from pepx.data.budget import BYTES_PER_PIXEL, check_budget, minmax
from pepx.data.errors import ImageReadError, ImageTooLargeError
from pepx.fileio import display_path

log = logging.getLogger("pepx.data")
#: Bytes of a deflated data set inflated to find its header (Rows, Columns, ...) before its pixels.
HEADER_BYTES = 1 << 20
PIXEL_DATA = 0x7FE00010


def read_dicom(data: bytes, name: str | Path, max_pixels: int) -> np.ndarray:
    """The first frame of the DICOM `data` as float32 [H, W] in [0, 1] (modality LUT, VOI LUT or window,
    MONOCHROME1 inverted); errors and warnings name `name`."""
    ds = _dataset(data, name, max_pixels)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(name, "DICOM has no pixel data")
    rows, cols, frames, samples, bits = _geometry(ds, name)
    check_budget(name, cols, rows, max_pixels, frames=frames, samples=samples, bytes_per_sample=-(-bits // 8))
    try:
        raw = pixel_array(ds, index=0)
    except Exception as e:  # noqa: BLE001 - pydicom's decoders raise many types for broken pixel data
        hint = (" (compressed transfer syntax: install pylibjpeg / pylibjpeg-libjpeg)"
                if "handler" in str(e).lower() or "plugin" in str(e).lower() else "")
        raise ImageReadError(name, f"cannot decode DICOM pixels: {e}{hint}") from None
    if raw.ndim == 3 and samples > 1:  # colour: luminance
        raw = raw[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return minmax(raw).astype(np.float32)
    arr = _modality(raw, ds, name)
    lut_bits = _voi_lut_bits(ds, name)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        try:
            arr = apply_voi_lut(arr, ds)
        except Exception as e:  # noqa: BLE001
            _skip(name, f"VOI LUT / window ({type(e).__name__}: {e})")
            lut_bits = None
    arr = np.asarray(arr, dtype=np.float64)
    stored = _int(ds, "BitsStored", bits)
    if lut_bits is not None:
        lo, hi = 0.0, float(2**lut_bits - 1)
    elif _int(ds, "PixelRepresentation", 0) == 1:
        lo, hi = float(-(2 ** (stored - 1))), float(2 ** (stored - 1) - 1)
    else:
        lo, hi = 0.0, float(2**stored - 1)
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ImageReadError(name, "DICOM pixels are empty or not finite")
    # a modality LUT may move the values out of the stored range (e.g. a rescale slope): then use their range
    out = minmax(arr) if arr.min() < lo or arr.max() > hi or hi <= lo else (arr - lo) / (hi - lo)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        out = 1.0 - out
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------- the data set, within the budget
def _dataset(data: bytes, name: str | Path, max_pixels: int) -> Dataset:
    fp = io.BytesIO(data)
    try:
        preamble = read_preamble(fp, False)
        meta = pydicom.filereader._read_file_meta_info(fp)  # the file meta group, never compressed
        if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            body = _inflate(data[fp.tell():], name, max_pixels)
            ds = read_dataset(io.BytesIO(body), is_implicit_VR=False, is_little_endian=True)
            return FileDataset(str(name), ds, preamble=preamble, file_meta=meta, is_implicit_VR=False,
                               is_little_endian=True)
        return pydicom.dcmread(io.BytesIO(data))
    except ImageReadError:
        raise
    except InvalidDicomError as e:
        raise ImageReadError(name, f"not a valid DICOM file ({e})") from None
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        raise ImageReadError(name, f"unreadable DICOM ({type(e).__name__}: {e})") from None


def _inflate(zipped: bytes, name: str | Path, max_pixels: int) -> bytes:
    """A deflated data set, inflated no further than its header's pixel geometry allows."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head = inflater.decompress(zipped, HEADER_BYTES)
    need = BYTES_PER_PIXEL * max_pixels + HEADER_BYTES  # no header found: the whole budget at most
    try:
        header = read_dataset(io.BytesIO(head), False, True, stop_when=lambda tag, *_: tag >= PIXEL_DATA)
        rows, cols, frames, samples, bits = _geometry(header, name)
    except ImageReadError:
        raise
    except Exception:  # noqa: BLE001 - a header longer than HEADER_BYTES: fall back to the whole budget
        pass
    else:
        if rows and cols:
            per_sample = -(-bits // 8)
            check_budget(name, cols, rows, max_pixels, frames=frames, samples=samples,
                         bytes_per_sample=per_sample)
            need = rows * cols * frames * samples * per_sample + 2 * HEADER_BYTES
    rest, left = b"", need - len(head)
    if inflater.unconsumed_tail and left > 0:  # max_length 0 would mean no limit
        rest = inflater.decompress(inflater.unconsumed_tail, left)
    if inflater.unconsumed_tail:
        raise ImageTooLargeError(name, f"deflated DICOM inflates past {need / 1e6:.0f} MB, more than its "
                                       "header and the pixel budget allow (possible decompression bomb)")
    return head + rest


def _geometry(ds: Dataset, name: str | Path) -> tuple[int, int, int, int, int]:
    """Rows, Columns, frames, samples per pixel and bits allocated, checked to be sane integers."""
    values = (_int(ds, "Rows", 0), _int(ds, "Columns", 0), _int(ds, "NumberOfFrames", 1),
              _int(ds, "SamplesPerPixel", 1), _int(ds, "BitsAllocated", 16))
    if min(values[2:]) < 1 or values[0] < 0 or values[1] < 0 or values[4] > 64:
        raise ImageReadError(name, f"malformed DICOM header (rows, cols, frames, samples, bits: {values})")
    return values


def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword, default)
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------------- damaged entries: skipped, warned
def _skip(name: str | Path, what: str) -> None:
    log.warning("%s: %s is unreadable: skipped", display_path(name), what)


def _modality(raw: np.ndarray, ds: Dataset, name: str | Path) -> np.ndarray:
    """Modality LUT / rescale, or the raw values when the entry is broken (e.g. a non-numeric slope)."""
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword in ds and not _is_number(ds[keyword].value):
            _skip(name, f"{keyword} {ds[keyword].value!r}")
            return raw
    try:
        return apply_modality_lut(raw, ds)
    except Exception as e:  # noqa: BLE001
        _skip(name, f"modality LUT ({type(e).__name__}: {e})")
        return raw


def _voi_lut_bits(ds: Dataset, name: str | Path) -> int | None:
    """Output bits of a usable VOI LUT; a broken VOILUTSequence or window is removed from `ds` (a private
    copy read from the bytes) so that `apply_voi_lut` uses what is left."""
    if "VOILUTSequence" in ds:
        seq = ds.VOILUTSequence
        item = seq[0] if len(seq) else None
        desc = getattr(item, "LUTDescriptor", None) if item is not None else None
        if item is None or desc is None or len(desc) != 3 or "LUTData" not in item or not _is_number(desc[2]):
            what = "empty" if item is None else "without LUTDescriptor" if desc is None else "malformed"
            _skip(name, f"VOILUTSequence ({what})")
            del ds.VOILUTSequence
        else:
            return int(desc[2])
    if "WindowCenter" in ds or "WindowWidth" in ds:
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if not (_is_number(_first(center)) and _is_number(_first(width)) and float(_first(width)) > 0):
            _skip(name, f"window (WindowCenter {center!r}, WindowWidth {width!r})")
            for keyword in ("WindowCenter", "WindowWidth"):
                if keyword in ds:
                    del ds[keyword]
    return None


def _first(value: object) -> object:
    return value[0] if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) and value else value


def _is_number(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


__all__ = ["read_dicom"]
