"""CXRDataset: cache hits/misses, preprocessing, augmentation determinism, synthetic learnability basics."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pepx.data import CXRDataset, load_source
from pepx.data.transforms import crop_resize


def frame(tmp_path, n=4):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (60, 50), dtype=np.uint8)).save(p)
        rows.append(
            {"path": str(p), "label": ("normal", "pneumonia", "COVID-19")[i % 3], "patient_id": f"p{i}"}
        )
    return pd.DataFrame(rows)


def test_item_shape_labels_and_normalisation(tmp_path):
    ds = CXRDataset(frame(tmp_path), image_size=32, cache_dir=tmp_path / "c")
    x, y = ds[1]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and y == 1
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2
    assert ds.labels.tolist() == [0, 1, 2, 0] and ds.labels.dtype == torch.long


def test_cache_reused_and_invalidated_by_file_change(tmp_path):
    f = frame(tmp_path)
    ds = CXRDataset(f, image_size=24, cache_dir=tmp_path / "c")
    entries = sorted((tmp_path / "c").rglob("*.npy"))
    assert len(entries) == 4
    stamp = {p: p.stat().st_mtime_ns for p in entries}
    before = ds[0][0]
    ds2 = CXRDataset(f, image_size=24, cache_dir=tmp_path / "c")  # all hits: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in entries} == stamp
    assert torch.equal(ds2[0][0], before)
    new = np.tile(np.linspace(0, 255, 50, dtype=np.uint8), (60, 1))
    Image.fromarray(new).save(f.path[0])
    os.utime(f.path[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    ds3 = CXRDataset(f, image_size=24, cache_dir=tmp_path / "c")
    assert not torch.equal(ds3[0][0], before)
    expect = torch.from_numpy(crop_resize(new / 255.0, 24).astype(np.float32) / 255)
    expect = (expect - expect.mean()) / expect.std()
    assert torch.allclose(ds3[0][0][0], expect, atol=1e-4)
    assert torch.equal(ds3[1][0], ds[1][0])


def test_cache_invalidated_by_setting_change(tmp_path):
    f = frame(tmp_path)
    a = CXRDataset(f, image_size=24, cache_dir=tmp_path / "c")
    b = CXRDataset(f, image_size=24, cache_dir=tmp_path / "c", preprocess={"top_crop": 0.08})
    c = CXRDataset(f, image_size=20, cache_dir=tmp_path / "c")
    assert len({a.cache.dir, b.cache.dir, c.cache.dir}) == 3
    assert not torch.equal(a[0][0], b[0][0])
    with pytest.raises(ValueError, match="unknown preprocess"):
        CXRDataset(f, image_size=24, cache_dir=tmp_path / "c", preprocess={"colour": 1})


def test_augmentation_is_a_function_of_seed_epoch_index(tmp_path):
    f = frame(tmp_path, n=6)
    a = CXRDataset(f, image_size=32, augment=True, seed=7, cache_dir=tmp_path / "c")
    b = CXRDataset(f, image_size=32, augment=True, seed=7, cache_dir=tmp_path / "c")
    a.set_epoch(2)
    b.set_epoch(2)
    _ = b[3]  # reading other items first changes nothing
    assert torch.equal(a[4][0], b[4][0])
    b.set_epoch(3)
    assert not torch.equal(a[4][0], b[4][0])
    other_seed = CXRDataset(f, image_size=32, augment=True, seed=8, cache_dir=tmp_path / "c")
    other_seed.set_epoch(2)
    assert not torch.equal(a[4][0], other_seed[4][0])
    plain = CXRDataset(f, image_size=32, cache_dir=tmp_path / "c")
    assert not torch.equal(a[4][0], plain[4][0])


def test_same_batches_with_two_workers(tmp_path):
    a = CXRDataset(frame(tmp_path, n=8), image_size=32, augment=True, seed=1, cache_dir=tmp_path / "c")
    a.set_epoch(5)
    dl = torch.utils.data.DataLoader
    x0 = torch.cat([x for x, _ in dl(a, batch_size=3, num_workers=0)])
    x2 = torch.cat([x for x, _ in dl(a, batch_size=3, num_workers=2)])
    assert torch.equal(x0, x2)


def test_synthetic_classes_not_separable_by_mean_intensity(tmp_path, monkeypatch):
    monkeypatch.setenv("PEPX_CACHE", str(tmp_path / "cache"))
    m = load_source("synthetic:n_per_class=30,size=64").manifest
    assert m.groupby("patient_id").size().max() == 2 and m["source"].nunique() == 3
    assert set(m["age_group"]) == {"adult", "pediatric"}
    means = np.array([np.asarray(Image.open(p)).mean() for p in m.path])
    # best single threshold pair on the mean: far from separating three classes
    order = np.argsort(means)
    lab = m["label"].to_numpy()[order]
    best = max(
        np.mean(np.r_[lab[:i] == a, lab[i:j] == b, lab[j:] == c])
        for i in range(0, 91, 3)
        for j in range(i, 91, 3)
        for a, b, c in [
            ("normal", "pneumonia", "COVID-19"),
            ("normal", "COVID-19", "pneumonia"),
            ("pneumonia", "normal", "COVID-19"),
            ("pneumonia", "COVID-19", "normal"),
            ("COVID-19", "normal", "pneumonia"),
            ("COVID-19", "pneumonia", "normal"),
        ]
    )
    assert best < 0.65
