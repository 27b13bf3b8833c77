"""Real set ../shared/data/cxr-real (version 2): counts, a patient-disjoint, duplicate-free split; the age and
view confound warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pepx.cli import main
from pepx.data import CXRDataset, leak_check, load_source, load_split, read_image

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cxr-real"
SPEC = f"csv:{REAL / 'metadata.csv'}"
pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not (REAL / "metadata.csv").is_file(), reason="../shared/data/cxr-real is absent"),
]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEPX_CACHE", str(tmp_path / "cache"))


def test_manifest_complete_version_2():
    """Version 2 (README): 4,602 films; version 1's 2,997 rows unchanged (`source != "rsna"`), then 1,605
    adult `rsna` films whose view goes with the class."""
    res = load_source(SPEC)
    m = res.manifest
    assert len(m) == 4602 and res.problems == []
    assert m["label"].value_counts().to_dict() == {"normal": 1773, "pneumonia": 1832, "COVID-19": 997}
    v1, rsna = m[m["source"] != "rsna"], m[m["source"] == "rsna"]
    assert v1["label"].value_counts().to_dict() == {"normal": 1000, "pneumonia": 1000, "COVID-19": 997}
    assert rsna["label"].value_counts().to_dict() == {"pneumonia": 832, "normal": 773}
    assert set(rsna["age_group"]) == {"adult"} and set(rsna["view"]) == {"AP", "PA"}
    assert (m["age_group"] == "adult").sum() == 3308  # 1,407 normal, 904 pneumonia, 997 COVID-19
    views = rsna.groupby("label")["view"].value_counts(normalize=True)
    assert views[("normal", "PA")] == pytest.approx(0.82, abs=0.005)
    assert views[("pneumonia", "AP")] == pytest.approx(0.77, abs=0.005)


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
    assert "source=rsna never occurs in class COVID-19: source identifies class" in out
    assert "1040 images have per-image pseudo patient ids" in out
    # view: counts per class, and where it goes with a class (version 2's rsna films)
    assert "AP/PA" in out and "AP Supine" in out
    assert "view=AP/PA never occurs in class COVID-19: view identifies class" in out
    assert "view=AP goes with class pneumonia within source=rsna: 82 % of its 775 images" in out
    assert "view=PA goes with class normal within source=rsna: 77 % of its 830 images" in out


def test_decode_and_cache_sample(tmp_path):
    m = load_source(SPEC).manifest.groupby("source").head(4)
    for p in m["path"]:
        img = read_image(p)
        assert min(img.shape) == 256 and 0 <= img.min() and img.max() <= 1
    ds = CXRDataset(m, image_size=64, cache_dir=tmp_path / "c")
    assert ds[0][0].shape == (1, 64, 64)
