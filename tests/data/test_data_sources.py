"""pepx.data adapters: COVIDx, CoronaHack, Cohen, folder, CSV and synthetic specs, with written fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fakes.images import png
from pepx import CLASSES
from pepx.data import SourceError, load_source
from pepx.data.sources.coronahack import map_coronahack
from pepx.data.sources.covidx import parse_line

pytestmark = pytest.mark.usefixtures("pepx_cache")


# --------------------------------------------------------------------------- COVIDx
def test_covidx_line_parsing_from_the_right():
    assert parse_line("8 SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg pneumonia") == (
        "8",
        "SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg",
        "pneumonia",
        None,
    )
    assert parse_line("419639-003251 MIDRC-RICORD-1C-419639-003251-46647-0.png COVID-19 ricord") == (
        "419639-003251",
        "MIDRC-RICORD-1C-419639-003251-46647-0.png",
        "COVID-19",
        "ricord",
    )
    assert parse_line("COVID 19 patient 7 img7.png COVID-19 sirm") == (
        "COVID 19 patient 7",
        "img7.png",
        "COVID-19",
        "sirm",
    )
    assert parse_line("Patient 12 x.png normal") == ("Patient 12", "x.png", "normal", None)
    assert parse_line("x.png normal") is None


def write_covidx(root: Path) -> None:
    for part, names in (
        ("train", ["a.png", "b.png", "c.png", "d.png", "e.png"]),
        ("test", ["t1.png", "t2.png"]),
    ):
        for n in names:
            png(root / part / n)
    (root / "train_COVIDx9A.txt").write_text(
        "p1 a.png normal rsna\n"
        "COVID 19 patient 3 b.png COVID-19 sirm\n"  # spaced patient id
        "p2 c.png pneumonia rsna\n"
        "p4 d.png unknown-label rsna\n"
        "p5 missing.png normal rsna\n"
        "garbage\n"
        "p2 e.png normal rsna\n"  # p2 also under pneumonia
    )
    (root / "test_COVIDx9A.txt").write_text("q1 t1.png normal rsna\nq2 t2.png COVID-19 bimcv\n")
    (root / "train_COVIDx9B.txt").write_text("p1 a.png negative rsna\nx b.png positive sirm\n")


def test_covidx_folder_reports_each_bad_row(tmp_path):
    write_covidx(tmp_path / "covidx")
    res = load_source(f"covidx:{tmp_path / 'covidx'}")  # 9A (3-class) chosen over the binary 9B
    m = res.manifest
    assert set(m["label"]) <= set(CLASSES)
    assert sorted(m["patient_id"]) == ["COVID 19 patient 3", "p1", "q1", "q2"]
    assert set(m["covidx_split"]) == {"train", "test"}
    assert m.loc[m.patient_id == "q2", "source"].item() == "bimcv"
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in m["path"])
    reasons = " | ".join(p.reason for p in res.problems)
    assert "unknown label" in reasons and "missing file" in reasons and "malformed line" in reasons
    assert sum("patient under two classes" in p.reason for p in res.problems) == 2
    counts = res.problem_counts()
    assert counts["patient under two classes"] == 2 and counts["unknown label"] == 1


def test_covidx_binary_file_refused(tmp_path):
    write_covidx(tmp_path / "covidx")
    with pytest.raises(SourceError, match="binary COVIDx"):
        load_source(f"covidx:{tmp_path / 'covidx' / 'train_COVIDx9B.txt'}")


def test_covidx_v3_three_columns(tmp_path):
    png(tmp_path / "train" / "x.jpeg")
    (tmp_path / "train_COVIDx3.txt").write_text("8 x.jpeg pneumonia\n")
    m = load_source(f"covidx:{tmp_path / 'train_COVIDx3.txt'}").manifest
    assert m.iloc[0][["patient_id", "label", "source"]].tolist() == ["8", "pneumonia", "covidx"]


# --------------------------------------------------------------------------- CoronaHack
def test_coronahack_mapping_and_patients(tmp_path):
    root = tmp_path / "ch"
    rows = [
        ("IM-0115-0001.jpeg", "Normal", "TRAIN", "", ""),
        ("IM-0115-0002.jpeg", "Normal", "TRAIN", "", ""),
        ("person1_bacteria_1.jpeg", "Pnemonia", "TRAIN", "", "bacteria"),
        ("person2_virus_3.jpeg", "Pnemonia", "TEST", "", "Virus"),
        ("covid1.jpg", "Pnemonia", "TRAIN", "COVID-19", "Virus"),
        ("sars1.jpg", "Pnemonia", "TRAIN", "SARS", "Virus"),
        ("ards1.jpg", "Pnemonia", "TRAIN", "ARDS", "Stress-Smoking"),
        ("odd.jpg", "Other", "TRAIN", "", ""),
    ]
    for (
        name,
        *_,
    ) in rows:
        png(root / "Coronahack-Chest-XRay-Dataset" / ("test" if "person2" in name else "train") / name)
    pd.DataFrame(
        rows,
        columns=[
            "X_ray_image_name",
            "Label",
            "Dataset_type",
            "Label_2_Virus_category",
            "Label_1_Virus_category",
        ],
    ).to_csv(root / "Chest_xray_Corona_Metadata.csv")
    res = load_source(f"coronahack:{root}")
    m = res.manifest.set_index(res.manifest["path"].map(lambda p: Path(p).name))
    assert m.loc["covid1.jpg", "label"] == "COVID-19"
    assert m.loc["sars1.jpg", "label"] == m.loc["ards1.jpg", "label"] == "pneumonia"
    assert (
        m.loc["IM-0115-0002.jpeg", "patient_id"] == "IM-0115"
        and m.loc["person1_bacteria_1.jpeg", "patient_id"] == "person1"
    )
    assert m.loc["person2_virus_3.jpeg", "age_group"] == "pediatric"
    assert m.loc["covid1.jpg", "patient_id_kind"] == "per_image_pseudo"
    assert [p.reason for p in res.problems] == ["unknown label: 'Other'"]
    assert map_coronahack("Pnemonia", "Virus", "COVID-19") == "COVID-19"


# --------------------------------------------------------------------------- Cohen
def test_cohen_findings_views_modalities(tmp_path):
    root = tmp_path / "covid-chestxray-dataset"
    rows = [
        ("1", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "a.png", "65"),
        ("1", "Pneumonia/Viral/COVID-19", "L", "X-ray", "a_lat.png", "65"),
        ("2", "COVID-19", "AP Supine", "X-ray", "b.png", "50"),
        ("3", "Pneumonia/Bacterial/Streptococcus", "AP", "X-ray", "c.png", "8"),
        ("4", "No Finding", "PA", "X-ray", "d.png", ""),
        ("5", "COVID-19", "Axial", "CT", "e.png", "40"),
        ("6", "Tuberculosis", "PA", "X-ray", "f.png", "30"),
        ("7", "SARS", "PA", "X-ray", "g.png", "30"),
    ]
    for r in rows:
        png(root / "images" / r[4])
    pd.DataFrame(rows, columns=["patientid", "finding", "view", "modality", "filename", "age"]).to_csv(
        root / "metadata.csv", index=False
    )
    res = load_source(f"cohen:{root}")
    m = res.manifest.set_index(res.manifest["path"].map(lambda p: Path(p).name))
    assert dict(m["label"]) == {
        "a.png": "COVID-19",
        "b.png": "COVID-19",
        "c.png": "pneumonia",
        "d.png": "normal",
        "g.png": "pneumonia",
    }
    assert m.loc["c.png", "age_group"] == "pediatric" and pd.isna(m.loc["d.png", "age_group"])
    reasons = sorted(p.reason for p in res.problems)
    assert any("modality CT" in r for r in reasons) and any("view L" in r for r in reasons)
    assert any("unknown label: 'Tuberculosis'" in r for r in reasons)


# --------------------------------------------------------------------------- folder / csv / specs
def test_folder_aliases_and_unknown_folder(tmp_path):
    png(tmp_path / "NORMAL" / "a.png")
    png(tmp_path / "Non-COVID" / "b.png")
    png(tmp_path / "covid" / "sub" / "c.png")
    png(tmp_path / "tuberculosis" / "d.png")
    res = load_source(f"folder:{tmp_path}")
    assert sorted(res.manifest["label"]) == ["COVID-19", "normal", "pneumonia"]
    assert (res.manifest["patient_id_kind"] == "per_image_pseudo").all()
    assert len(res.problems) == 1 and "tuberculosis" in res.problems[0].reason


def test_csv_manifest_relative_paths_and_passthrough(tmp_path):
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "images" / "b.png")
    pd.DataFrame(
        {
            "filename": ["images/a.png", "images/b.png", "images/zz.png"],
            "label": ["normal", "COVID-19", "pneumonia"],
            "patient_id": ["001", "", "003"],
            "source_key": ["s1", "s2", "s1"],
            "age_group": ["adult", "pediatric", "adult"],
            "pixel_sha1": ["x", "y", "z"],
        }
    ).to_csv(tmp_path / "metadata.csv", index=False)
    res = load_source(f"csv:{tmp_path / 'metadata.csv'}")
    m = res.manifest
    assert list(m.columns[:6]) == ["path", "label", "patient_id", "source", "age_group", "view"]
    assert m.loc[0, "patient_id"] == "001" and m.loc[0, "source"] == "s1" and "pixel_sha1" in m.columns
    assert m.loc[1, "patient_id_kind"] == "per_image_pseudo"  # no id: its own patient, train-only
    assert len(res.problems) == 1 and "missing file" in res.problems[0].reason


def test_bad_specs():
    for spec in (
        "nope:/x",
        "csv",
        "csv:/definitely/not/here.csv",
        "synthetic:size=abc",
        "synthetic:colour=1",
    ):
        with pytest.raises(SourceError):
            load_source(spec)


def test_synthetic_spec_generated_once_and_deterministic(tmp_path):
    a = load_source("synthetic:n_per_class=8,size=48,seed=3").manifest
    b = load_source("synthetic:n_per_class=8,size=48,seed=3").manifest
    assert a["path"].tolist() == b["path"].tolist() and len(a) == 24
    assert str(tmp_path / "cache") in a["path"].iloc[0]
    c = load_source("synthetic:n_per_class=8,size=48,seed=4").manifest
    assert np.array_equal(np.asarray(Image.open(a.path[0])), np.asarray(Image.open(a.path[0])))
    assert not np.array_equal(np.asarray(Image.open(a.path[0])), np.asarray(Image.open(c.path[0])))
    assert Image.open(a.path[0]).size == (48, 48)
    assert a["label"].value_counts().to_dict() == dict.fromkeys(CLASSES, 8)
