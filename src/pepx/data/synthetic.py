"""Procedural chest-radiograph-like images: the no-download default data set.

Each image has a thorax (soft tissue), two dark lung fields, a bright mediastinum and heart, curved ribs,
diaphragm domes, faint vessel-like blobs and noise. Class findings:

- normal: clear lungs;
- pneumonia: one focal, dense, fairly sharp lobar consolidation, mostly in one lung (any zone);
- COVID-19: several faint, hazy ground-glass patches, bilateral, peripheral and in the lower zones.

Patients: about a quarter have two images (same anatomy, new pose and noise). Sources (`site_a/b/c`) differ in
contrast, gamma and noise; `age_group` is pediatric for about a quarter (smaller, rounder thorax). With
`confounded=True`, each class comes from its own source and COVID-19 is never pediatric, so the confound
report has something to find. Everything is vectorised numpy seeded by `seed`; the images are written as
PNGs with a `metadata.csv` and read back through the ordinary `csv:` path.

Lesion masks (version 4): each pneumonia and COVID-19 image also gets `masks/<label>/<name>.png` (255 inside
the lesion), named in the `mask_path` column (relative to the set's folder, empty for normal images). The mask
holds the pixels where the finding adds at least `MASK_LEVEL` of its own peak intensity: the answer key of
Grad-CAM's localisation check. Drawing it takes no random numbers, so the images are those of version 3.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pepx import CLASSES
from pepx.data.errors import SourceError

#: Acquisition look of each synthetic source: (contrast, gamma, noise sd, blur-ish offset).
SOURCES = {
    "site_a": (1.0, 1.0, 0.025, 0.00),
    "site_b": (0.8, 1.3, 0.045, 0.05),
    "site_c": (1.15, 0.8, 0.015, -0.03),
}
CONFOUNDED_SOURCE = {"normal": "site_a", "pneumonia": "site_b", "COVID-19": "site_c"}
#: A lesion mask holds the pixels where the finding reaches this share of its peak added intensity.
MASK_LEVEL = 0.25


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic set; the cache folder is keyed by all of them."""

    n_per_class: int = 100
    size: int = 128
    seed: int = 0
    confounded: bool = False
    version: int = 4  # bump when the generator changes, so old caches are not reused (4: lesion masks)

    def key(self) -> str:
        """Short stable hash of the parameters."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _blob(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, sharp: float
) -> np.ndarray:
    """Smooth elliptical blob in [0, 1]; `sharp` > 1 gives a flatter top and steeper edge."""
    d2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    return np.exp(-(d2**sharp))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a small random grid upsampled bilinearly (Pillow)."""
    g = rng.random((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(g, mode="F").resize((size, size), Image.BILINEAR))


def _anatomy(rng: np.random.Generator, pediatric: bool) -> dict:
    """Per-patient anatomy parameters (shared by a patient's images)."""
    s = 0.85 if pediatric else 1.0
    return {
        "lung_w": rng.uniform(0.17, 0.21) * s,
        "lung_h": rng.uniform(0.30, 0.36) * s,
        "lung_gap": rng.uniform(0.20, 0.25) * s,
        "lung_cy": rng.uniform(0.44, 0.50),
        "heart": rng.uniform(0.10, 0.14) * s,
        "rib_period": rng.uniform(0.075, 0.095) * s,
        "tissue": rng.uniform(0.45, 0.6),
        "air": rng.uniform(0.12, 0.22),
        "pediatric": pediatric,
    }


def _finding(rng: np.random.Generator, label: str) -> dict:
    """Per-patient finding parameters (a patient's two images show the same disease)."""
    if label == "pneumonia":
        side = rng.choice([-1, 1])
        return {
            "side": side,
            "zone": rng.uniform(-0.6, 0.7),
            "r": rng.uniform(0.35, 0.55),
            "dens": rng.uniform(0.30, 0.5),
            "other": rng.random() < 0.2,
        }
    if label == "COVID-19":
        return {"n": rng.integers(2, 5), "dens": rng.uniform(0.2, 0.3)}
    return {}


def render_with_mask(
    rng: np.random.Generator, size: int, anat: dict, label: str, find: dict, source: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """One image as uint8 [size, size] and its lesion mask (bool [size, size]; None for a normal image)."""
    c = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    # pose jitter (shift, small tilt) per image
    dy, dx, tilt = rng.normal(0, 0.03), rng.normal(0, 0.03), rng.normal(0, 0.04)
    y, x = yy - dy + tilt * xx, xx - dx
    img = 0.05 + anat["tissue"] * _blob(y, x, 0.1, 0.0, 1.05, 0.82, 3.0)  # body soft tissue
    lungs = np.zeros_like(img)
    for side in (-1, 1):
        cx = side * (anat["lung_gap"] + anat["lung_w"] + rng.normal(0, 0.01))
        lungs = np.maximum(lungs, _blob(y, x, anat["lung_cy"] - 0.55, cx, anat["lung_h"] * 1.6,
                                        anat["lung_w"] * 1.7, 2.5))
    # diaphragm domes: below a curve that rises under each lung
    reach = anat["lung_gap"] + 2 * anat["lung_w"]
    dome = 0.42 - 0.18 * np.cos(np.clip(np.abs(x) / reach, 0, 1) * np.pi / 2)
    below = 1 / (1 + np.exp(-(y - dome) * 30))
    lungs = lungs * (1 - below)
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (y + 0.9 * x**2) / anat["rib_period"])
    img = img - anat["air"] * 2.2 * lungs + 0.08 * lungs * ribs**3
    img += 0.12 * below * _blob(y, x, 0.5, 0, 1, 0.8, 2)  # abdomen
    img += 0.22 * _blob(y, x, -0.1, 0.0, 0.95, 0.13, 2.0)  # mediastinum / spine
    img += 0.25 * _blob(y, x, 0.15, 0.10, anat["heart"] * 1.8, anat["heart"] * 2.2, 1.5)  # heart, left
    for _ in range(rng.integers(4, 9)):  # normal vessel / overlap shadows in every class
        cy, cx = rng.uniform(-0.5, 0.2), rng.choice([-1, 1]) * rng.uniform(0.15, 0.4)
        img += 0.05 * _blob(y, x, cy, cx, rng.uniform(0.03, 0.08), rng.uniform(0.03, 0.08), 1.0) * lungs
    tex = _smooth_noise(rng, size, 8)
    if label == "pneumonia":
        cx = find["side"] * (anat["lung_gap"] + anat["lung_w"])
        cy = (anat["lung_cy"] - 0.55) + find["zone"] * anat["lung_h"] * 1.2 + rng.normal(0, 0.03)
        r = find["r"] * anat["lung_w"] * 1.7
        lesion = _blob(y, x, cy, cx + rng.normal(0, 0.02), r * rng.uniform(0.9, 1.3), r, 3.0)
        if find["other"]:
            lesion += 0.4 * _blob(y, x, cy + 0.1, -cx, r * 0.5, r * 0.5, 2.0)
        finding = find["dens"] * lesion * lungs * (0.8 + 0.4 * tex)
        img += finding
    elif label == "COVID-19":
        haze = np.zeros_like(img)
        for k in range(int(find["n"])):
            side = (-1, 1)[k % 2]  # alternate sides: bilateral
            cx = side * (anat["lung_gap"] + anat["lung_w"] * rng.uniform(1.6, 2.3))  # peripheral
            cy = (anat["lung_cy"] - 0.55) + anat["lung_h"] * rng.uniform(0.3, 1.1)  # lower zone
            haze += _blob(y, x, cy, cx, rng.uniform(0.12, 0.2), rng.uniform(0.08, 0.14), 1.0)
        finding = find["dens"] * np.minimum(haze, 1.2) * lungs * (0.5 + tex)
        img += finding
    mask = None if label == "normal" else finding >= MASK_LEVEL * float(finding.max())
    contrast, gamma, noise, offset = SOURCES[source]
    img = np.clip((img - 0.3) * contrast * rng.uniform(0.9, 1.1) + 0.3 + offset + rng.normal(0, 0.03), 0, 1)
    img = img ** (gamma * rng.uniform(0.92, 1.08))
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), mask


def generate(spec: SyntheticSpec, out_dir: Path) -> pd.DataFrame:
    """Write the PNGs and `metadata.csv` of `spec` into `out_dir`; returns the metadata frame."""
    rng = np.random.default_rng(spec.seed)
    rows = []
    for ci, label in enumerate(CLASSES):
        (out_dir / "images" / label).mkdir(parents=True, exist_ok=True)
        if label != "normal":
            (out_dir / "masks" / label).mkdir(parents=True, exist_ok=True)
        n, p = 0, 0
        while n < spec.n_per_class:
            pid = f"syn{spec.seed}-{ci}{p:05d}"
            p += 1
            if spec.confounded:
                source = CONFOUNDED_SOURCE[label]
                pediatric = label != "COVID-19" and rng.random() < 0.35
            else:
                source = str(rng.choice(list(SOURCES)))
                pediatric = rng.random() < 0.25
            anat, find = _anatomy(rng, pediatric), _finding(rng, label)
            n_img = min(2 if rng.random() < 0.25 else 1, spec.n_per_class - n)
            for k in range(n_img):
                arr, mask = render_with_mask(rng, spec.size, anat, label, find, source)
                rel = f"images/{label}/{pid}_{k}.png"
                Image.fromarray(arr).save(out_dir / rel, compress_level=1)
                mask_rel = "" if mask is None else f"masks/{label}/{pid}_{k}.png"
                if mask is not None:
                    Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / mask_rel, compress_level=1)
                rows.append(
                    {
                        "filename": rel,
                        "label": label,
                        "patient_id": pid,
                        "source": source,
                        "age_group": "pediatric" if pediatric else "adult",
                        "view": "PA",
                        "patient_id_kind": "source_patient_id",
                        "mask_path": mask_rel,
                    }
                )
                n += 1
    frame = pd.DataFrame(rows)
    frame.to_csv(out_dir / "metadata.csv", index=False)
    (out_dir / "spec.json").write_text(json.dumps(asdict(spec), indent=1))
    return frame


def ensure_synthetic(spec: SyntheticSpec, cache_root: Path) -> Path:
    """The folder of the synthetic set `spec` under `cache_root/synthetic/`, generated once (atomically)."""
    final = (
        cache_root / "synthetic" / f"n{spec.n_per_class}_s{spec.size}_seed{spec.seed}_"
        f"{'conf' if spec.confounded else 'mix'}_{spec.key()}"
    )
    if (final / "metadata.csv").is_file():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    except OSError as err:
        raise SourceError(f"synthetic: cannot write the set into the cache {final.parent} "
                          f"({err.strerror or err}); set $PEPX_CACHE to a writable folder") from None
    try:
        generate(spec, tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: keep theirs
            if not (final / "metadata.csv").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
