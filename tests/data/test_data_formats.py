"""Real label-file formats read right (issue 9, items 3, 5, 6, 7) and reports that say what was not checked
(item 10). The fixtures copy the real files' naming and lines: COVID-Net's `labels/` folder (every release,
severity and binary files among them), the March-2020 `train_split.txt`, a COVIDx CXR-4 style
`train/val/test.txt`, and a covid-chestxray-dataset `metadata.csv`."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from fakes.images import png
from pepx.data import SourceError, leak_check, load_source
from pepx.data.inspect import inspect_source
from pepx.data.sources.cohen import map_finding, map_finding_covidnet
from pepx.data.sources.covidx import parse_version

pytestmark = pytest.mark.usefixtures("pepx_cache")


# --------------------------------------------------------------------------- COVIDx releases (items 3, 7)
def _release(root: Path, version: str, label_of: dict[str, str], parts=("train", "test")) -> None:
    """One release's label files, with a 4-column line per class (the v6+ format)."""
    for part in parts:
        lines = [f"{version}-{part}-{i} {version}-{part}-{i}.png {lab} rsna" for i, lab in label_of.items()]
        (root / f"{part}_{version}.txt").write_text("\n".join(lines) + "\n")


def covidnet_labels(root: Path) -> None:
    """COVID-Net's labels/ today: 3-class releases 3, 8A, 9A; binary 8B, 9B and pnemunia; severity files
    (`COVIDxSev`, level1/level2, which sort after 9A as text) and the MNTF severity scores."""
    three = {"0": "normal", "1": "pneumonia", "2": "COVID-19"}
    (root / "train_COVIDx3.txt").write_text("8 SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg pneumonia")
    for version in ("COVIDx8A", "COVIDx9A"):
        _release(root, version, three)
    for version in ("COVIDx8B", "COVIDx9B"):
        _release(root, version, {"0": "negative", "1": "positive"})
    _release(root, "COVIDxSev", {"0": "level1", "1": "level2"})
    (root / "train_pnemunia.txt").write_text("c5f17998 c5f17998.png positive\n")
    (root / "train_mntf_sev.txt").write_text("18.jpg S13279 3.0 2.0\n969.jpg S13388 6.0 7.0\n")
    for part in ("train", "test"):
        for i in range(3):
            png(root / part / f"COVIDx9A-{part}-{i}.png")


def test_covidx_labels_folder_picks_the_newest_three_class_release(tmp_path, caplog):
    """Text order would pick COVIDxSev (level1/level2: 0 images); the parsed versions pick 9A."""
    covidnet_labels(tmp_path)
    with caplog.at_level(logging.INFO, logger="pepx.data"):
        res = load_source(f"covidx:{tmp_path}")
    m = res.manifest
    assert len(m) == 6 and sorted(m["label"].value_counts().tolist()) == [2, 2, 2]
    assert sorted(set(m["label_file"])) == ["test_COVIDx9A.txt", "train_COVIDx9A.txt"]
    assert res.problems == []
    assert "using train_COVIDx9A.txt, test_COVIDx9A.txt" in caplog.text or \
        "using test_COVIDx9A.txt, train_COVIDx9A.txt" in caplog.text
    assert "COVIDxSev" in caplog.text  # named among what was passed over


def test_covidx_versions_order_by_number_and_release_family():
    names = ["split", "split_v2", "COVIDx", "COVIDx2", "COVIDx5", "COVIDx7A", "COVIDx8A", "COVIDx9A",
             "COVIDx10A", "COVIDx_CXR-3A", "COVIDx_CXR-4"]
    keys = [parse_version(n) for n in names]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert parse_version("COVIDx9A") < parse_version("COVIDx9B")
    for not_a_release in ("COVIDxSev", "pnemunia", "mntf_sev", "stratification"):
        assert parse_version(not_a_release) is None


def test_covidx_cxr3_beats_9a_and_a_named_file_is_read_alone(tmp_path):
    three = {"0": "normal", "1": "pneumonia", "2": "COVID-19"}
    _release(tmp_path, "COVIDx9A", three)
    _release(tmp_path, "COVIDx_CXR-3A", three)
    _release(tmp_path, "COVIDx_CXR-3B", {"0": "negative"}, parts=("train",))
    files = set(load_source(f"covidx:{tmp_path}", check_files=False).manifest["label_file"])
    assert files == {"train_COVIDx_CXR-3A.txt", "test_COVIDx_CXR-3A.txt"}
    one = load_source(f"covidx:{tmp_path / 'train_COVIDx9A.txt'}", check_files=False).manifest
    assert set(one["label_file"]) == {"train_COVIDx9A.txt"} and len(one) == 3


def test_covidx_folder_without_a_three_class_release_is_refused_with_what_it_holds(tmp_path):
    _release(tmp_path, "COVIDxSev", {"0": "level1", "1": "level2"})
    _release(tmp_path, "COVIDx9B", {"0": "negative", "1": "positive"})
    with pytest.raises(SourceError, match=r"no 3-class COVIDx label files.*COVIDx9B.txt \(binary\)"):
        load_source(f"covidx:{tmp_path}")
    with pytest.raises(SourceError, match=r"train_COVIDxSev.txt is not a 3-class .*level1, level2"):
        load_source(f"covidx:{tmp_path / 'train_COVIDxSev.txt'}")


@pytest.mark.parametrize("name, content, reason", [
    ("image.png", None, r"is an image \(\.png\)"),
    ("labels.txt", bytes(range(256)) * 8, "not a text label file"),
])
def test_covidx_label_file_that_is_not_text_is_refused(tmp_path, name, content, reason):
    path = png(tmp_path / name) if content is None else tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=reason):
        load_source(f"covidx:{path}")


# --------------------------------------------------------------------------- March 2020 and CXR-4 (item 5)
def test_covidx_march_2020_viral_and_bacteria_are_pneumonia(tmp_path):
    lines = {
        "train_split.txt": ["3 SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg viral",
                            "29 streptococcus-pneumoniae-pneumonia-1.jpg bacteria",
                            "2 auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg "
                            "COVID-19",
                            "10000927 NORMAL2-IM-0927-0001.jpeg normal"],
        "test_split.txt": ["8 SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg viral",
                           "31 pneumonia-7.jpg bacteria"],
    }
    for name, rows in lines.items():
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        for row in rows:
            png(tmp_path / name.split("_")[0] / row.split()[1])
    res = load_source(f"covidx:{tmp_path}")
    assert res.problems == []
    counts = res.manifest.groupby(["covidx_split", "label"]).size().to_dict()
    assert counts == {("train", "COVID-19"): 1, ("train", "normal"): 1, ("train", "pneumonia"): 2,
                      ("test", "pneumonia"): 2}


def test_covidx_val_file_is_read_as_the_validation_split(tmp_path):
    for part, n in (("train", 3), ("val", 2), ("test", 1)):
        labels = ("normal", "pneumonia", "COVID-19")
        rows = [f"{part}{i} {part}{i}.png {labels[i % 3]} bimcv" for i in range(n)]
        (tmp_path / f"{part}.txt").write_text("\n".join(rows) + "\n")
        for i in range(n):
            png(tmp_path / part / f"{part}{i}.png")
    m = load_source(f"covidx:{tmp_path}").manifest
    assert m["covidx_split"].value_counts().to_dict() == {"train": 3, "val": 2, "test": 1}
    assert set(m.loc[m["covidx_split"] == "val", "label_file"]) == {"val.txt"}


# --------------------------------------------------------------------------- Cohen (item 6)
COHEN_COLUMNS = ["patientid", "offset", "age", "finding", "view", "modality", "date", "folder", "filename"]
COVID = "Pneumonia/Viral/COVID-19"


def cohen_folder(root: Path) -> Path:
    """Patients 9 and 10 had a 'No Finding' film before their COVID-19 films (by offset; by date); patient 11
    had one after; the others exercise the two mappings."""
    rows = [
        ("9", "-12", "60", "No Finding", "PA", "X-ray", "2020", "images", "p9-before.png"),
        ("9", "0", "60", COVID, "PA", "X-ray", "2020", "images", "p9-a.png"),
        ("9", "4", "60", COVID, "AP", "X-ray", "2020", "images", "p9-b.png"),
        ("10", "", "45", "No Finding", "PA", "X-ray", "January 10, 2020", "images", "p10-n.png"),
        ("10", "", "45", "COVID-19, ARDS", "AP Supine", "X-ray", "March 3, 2020", "images", "p10-c.png"),
        ("11", "0", "70", COVID, "PA", "X-ray", "", "images", "p11-c.png"),
        ("11", "40", "70", "No Finding", "PA", "X-ray", "", "images", "p11-later.png"),
        ("12", "", "8", "Pneumonia/Bacterial/Streptococcus", "PA", "X-ray", "", "images", "s.png"),
        ("13", "", "50", "Pneumonia/Fungal/Pneumocystis", "PA", "X-ray", "", "images", "pcp.png"),
        ("14", "", "50", "Pneumonia/Lipoid", "PA", "X-ray", "", "images", "lipoid.png"),
        ("15", "", "50", "Pneumonia/Bacterial/E.Coli", "PA", "X-ray", "", "images", "ecoli.png"),
        ("16", "", "50", "Pneumonia/Viral/MERS-CoV", "PA", "X-ray", "", "images", "mers.png"),
        ("17", "", "30", "No Finding", "PA", "X-ray", "", "images", "healthy.png"),
    ]
    for r in rows:
        png(root / "images" / r[-1])
    pd.DataFrame(rows, columns=COHEN_COLUMNS).to_csv(root / "metadata.csv", index=False)
    return root


def _labels(res) -> dict[str, str]:
    return dict(zip(res.manifest["path"].map(lambda p: Path(p).name), res.manifest["label"], strict=True))


def test_cohen_pre_illness_no_finding_films_are_dropped_not_the_patient(tmp_path):
    res = load_source(f"cohen:{cohen_folder(tmp_path)}")
    labels = _labels(res)
    assert {k: labels.get(k) for k in ("p9-a.png", "p9-b.png", "p10-c.png")} == dict.fromkeys(
        ("p9-a.png", "p9-b.png", "p10-c.png"), "COVID-19")
    assert "p9-before.png" not in labels and "p10-n.png" not in labels
    reasons = {Path(p.path).name: p.reason for p in res.problems}
    assert "pre-illness" in reasons["p9-before.png"] and "pre-illness" in reasons["p10-n.png"]
    assert "before this patient's COVID-19 films" in reasons["p9-before.png"]
    # a 'No Finding' film after the illness is not pre-illness: the patient is under two classes, as before
    assert "patient under two classes" in reasons["p11-c.png"] and "p11-c.png" not in labels


def test_cohen_broad_and_covidnet_mappings(tmp_path):
    root = cohen_folder(tmp_path)
    broad = _labels(load_source(f"cohen:{root}"))
    covidnet = _labels(load_source(f"cohen:{root}?mapping=covidnet"))
    names = ("s.png", "pcp.png", "lipoid.png", "ecoli.png", "mers.png", "healthy.png")
    assert {k: broad[k] for k in names} == {**dict.fromkeys(names[:-1], "pneumonia"), "healthy.png": "normal"}
    assert covidnet == {"p9-a.png": "COVID-19", "p9-b.png": "COVID-19", "p11-c.png": "COVID-19",
                        "s.png": "pneumonia", "ecoli.png": "pneumonia"}
    assert map_finding_covidnet("COVID-19, ARDS") is None and map_finding("COVID-19, ARDS") == "COVID-19"
    assert map_finding_covidnet("Pneumonia/Viral/SARS") == "pneumonia" == map_finding("SARS")
    with pytest.raises(SourceError, match="choose one of broad, covidnet"):
        load_source(f"cohen:{root}?mapping=torchxrayvision")
    with pytest.raises(SourceError, match="unknown option"):
        load_source(f"cohen:{root}?colour=1")


# --------------------------------------------------------------------------- honest reports (item 10)
def test_leak_check_without_pixel_hashes_says_not_checked():
    frame = pd.DataFrame({"path": ["a", "b"], "patient_id": ["1", "2"], "label": ["normal", "normal"],
                          "split": ["train", "test"]})
    report = leak_check(frame)
    text = report.to_markdown()
    assert report.ok and not report.pixels_checked
    assert "identical-pixel images in two splits: **not checked**" in text
    assert "verdict: OK for patients; identical images not checked" in text
    hashed = leak_check(frame.assign(pixel_sha1=["x", "x"]))
    assert not hashed.ok and "verdict: LEAK" in hashed.to_markdown()


def test_inspect_counts_decodable_and_undecodable_images_apart(tmp_path):
    png(tmp_path / "normal" / "a.png")
    png(tmp_path / "normal" / "b.png")
    (tmp_path / "COVID-19" / "broken.png").parent.mkdir()
    (tmp_path / "COVID-19" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    text = inspect_source(f"folder:{tmp_path}").to_text()
    assert "images: 3 (2 decodable, 1 undecodable)" in text
    assert "decode check of 3 images: 2 decodable, 1 undecodable (listed under problems below" in text
    assert "broken.png" in text.split("problems (1):", 1)[1]
    (tmp_path / "COVID-19" / "broken.png").unlink()
    clean = inspect_source(f"folder:{tmp_path}").to_text()  # nothing to list: no promise of a list
    assert "decode check of 2 images: 2 decodable, 0 undecodable\n" in clean + "\n"
    assert "listed" not in clean and "problems" not in clean


def test_inspect_of_an_empty_manifest_is_a_sentence(tmp_path):
    (tmp_path / "train_COVIDx9A.txt").write_text("p1 gone.png normal rsna\np2 lost.png COVID-19 rsna\n")
    text = inspect_source(f"covidx:{tmp_path}").to_text()
    assert "Empty DataFrame" not in text
    assert "No usable images: all 2 rows or files were left out" in text
