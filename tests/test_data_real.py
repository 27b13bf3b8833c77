"""Real set ../shared/data/cxr-real: a patient-disjoint, duplicate-free split; the age confound warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from pepx.cli import main
from pepx.data import CXRDataset, leak_check, load_source, load_split, read_image

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cxr-real"
SPEC = f"csv:{REAL / 'metadata.csv'}"
pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not (REAL / "metadata.csv").is_file(), reason="../shared/data/cxr-real is absent"),
]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEPX_CACHE", str(tmp_path / "cache"))


def test_manifest_complete():
    res = load_source(SPEC)
    assert len(res.manifest) == 2997 and res.problems == []
    assert res.manifest["label"].value_counts().to_dict() == {
        "normal": 1000,
        "pneumonia": 1000,
        "COVID-19": 997,
    }


def test_cli_split_850_100_no_overlap_no_duplicates(tmp_path, capsys):
    out = tmp_path / "split.csv"
    assert main(["data", "split", SPEC, "--n-train", "850", "--n-test", "100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "patients in two splits: **0**" in printed
        and "identical-pixel images in two splits: **0**" in printed
    )
    s = load_split(out)
    assert s.groupby(["split", "label"]).size().to_dict() == {
        (sp, c): n for sp, n in (("train", 850), ("test", 100)) for c in ("normal", "pneumonia", "COVID-19")
    }
    assert set(s.loc[s.split == "test", "patient_id_kind"]) == {"source_patient_id"}
    assert not set(s.loc[s.split == "train", "patient_id"]) & set(s.loc[s.split == "test", "patient_id"])
    assert not set(s.loc[s.split == "train", "pixel_sha1"]) & set(s.loc[s.split == "test", "pixel_sha1"])
    # independent of the metadata: hash the decoded pixels of the test split and a train sample
    sub = s[(s.split == "test") | s.index.isin(s[s.split == "train"].sample(300, random_state=0).index)]
    rep = leak_check(sub.drop(columns=["pixel_sha1"]), decode=True)
    assert rep.ok and rep.hash_column.startswith("decoded") and not rep.unreadable


def test_cli_inspect_warns_age_identifies_class(capsys):
    assert main(["data", "inspect", SPEC, "--no-decode"]) == 0
    out = capsys.readouterr().out
    assert "age_group=pediatric never occurs in class COVID-19: age identifies class" in out
    assert "source=hannover occurs only in class COVID-19" in out
    assert "1040 images have per-image pseudo patient ids" in out


def test_decode_and_cache_sample(tmp_path):
    m = load_source(SPEC).manifest.groupby("source").head(4)
    for p in m["path"]:
        img = read_image(p)
        assert min(img.shape) == 256 and 0 <= img.min() and img.max() <= 1
    ds = CXRDataset(m, image_size=64, cache_dir=tmp_path / "c")
    assert ds[0][0].shape == (1, 64, 64)
