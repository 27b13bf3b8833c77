"""balanced_split, save/load, leak check and confound report."""

from __future__ import annotations

import pandas as pd
import pytest

from pepx import CLASSES
from pepx.data import (
    SplitError,
    balanced_split,
    confound_report,
    leak_check,
    load_source,
    load_split,
    save_split,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("PEPX_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield (
        load_source("synthetic:n_per_class=40,size=32").manifest,
        load_source("synthetic:n_per_class=40,size=32,confounded=1").manifest,
    )
    mp.undo()


def toy(n_patients: int = 30, per: int = 2, pseudo: int = 0) -> pd.DataFrame:
    rows = []
    for c in CLASSES:
        for p in range(n_patients):
            for k in range(per if p % 3 == 0 else 1):
                rows.append(
                    {
                        "path": f"/x/{c}/{p}_{k}.png",
                        "label": c,
                        "patient_id": f"{c}-{p}",
                        "source": f"s{p % 2}",
                        "age_group": "adult",
                        "view": "PA",
                        "patient_id_kind": "source_patient_id",
                    }
                )
        for q in range(pseudo):
            rows.append(
                {
                    "path": f"/x/{c}/ps{q}.png",
                    "label": c,
                    "patient_id": f"{c}-ps{q}",
                    "source": "s9",
                    "age_group": "adult",
                    "view": "PA",
                    "patient_id_kind": "per_image_pseudo",
                }
            )
    return pd.DataFrame(rows)


def test_balanced_patient_disjoint_deterministic(synthetic):
    m, _ = synthetic
    s = balanced_split(m, n_train=20, n_test=10, n_val=5, seed=1)
    counts = s.groupby(["split", "label"]).size()
    for c in CLASSES:
        assert (counts["train"][c], counts["val"][c], counts["test"][c]) == (20, 5, 10)
    by = s.groupby("patient_id")["split"].nunique()
    assert (by == 1).all()
    # whole patients: every image of a chosen patient is in the split
    chosen = set(s["patient_id"])
    assert len(m[m.patient_id.isin(chosen)]) == len(s)
    assert s.equals(balanced_split(m, n_train=20, n_test=10, n_val=5, seed=1))
    assert not s.equals(balanced_split(m, n_train=20, n_test=10, n_val=5, seed=2))
    assert leak_check(s).ok


def test_pseudo_ids_only_in_train_and_clear_errors(caplog):
    df = toy(n_patients=12, pseudo=20)
    s = balanced_split(df, n_train=20, n_test=6)
    assert set(s.loc[s.patient_id_kind == "per_image_pseudo", "split"]) == {"train"}
    assert "pseudo" in caplog.text
    with pytest.raises(SplitError, match=r"class 'normal'.*test.*real patient ids") as e:
        balanced_split(df, n_train=5, n_test=30)
    assert "images of" in str(e.value)
    with pytest.raises(SplitError, match="train"):
        balanced_split(df, n_train=100, n_test=5)


def test_folder_without_patient_ids_still_splits_with_a_warning(tmp_path, caplog):
    """A plain folder per class has no patient ids at all: test images come from it too, with a warning."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in CLASSES:
        (tmp_path / c).mkdir()
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    m = load_source(f"folder:{tmp_path}").manifest
    assert (m["patient_id_kind"] == "per_image_pseudo").all()
    s = balanced_split(m, n_train=5, n_test=3)
    assert s.groupby(["split", "label"]).size().tolist() == [3, 3, 3, 5, 5, 5]
    assert "no row has a real patient id" in caplog.text
    assert leak_check(s).ok


def test_stratify_source_shares_quota():
    df = toy(n_patients=40, per=1)
    s = balanced_split(df, n_train=20, n_test=10, stratify_source=True)
    t = s[s.split == "test"].groupby(["label", "source"]).size()
    assert (t == 5).all()


def test_save_load_roundtrip(tmp_path):
    df = toy()
    df["patient_id"] = "00" + df.groupby("patient_id").ngroup().astype(str)  # leading zeros must survive
    s = balanced_split(df, n_train=10, n_test=5)
    back = load_split(save_split(s, tmp_path / "split.csv"))
    assert back[["path", "label", "patient_id", "split"]].equals(s[["path", "label", "patient_id", "split"]])


def test_leak_check_finds_overlap_and_duplicates():
    s = pd.DataFrame(
        {
            "path": ["a", "b", "c", "d"],
            "label": ["normal"] * 4,
            "patient_id": ["p1", "p1", "p2", "p3"],
            "split": ["train", "test", "train", "test"],
            "pixel_sha1": ["h1", "h2", "h3", "h3"],
        }
    )
    rep = leak_check(s)
    assert not rep.ok and rep.n_patient_overlap() == 1 and rep.n_pixel_duplicates() == 1
    md = rep.to_markdown()
    assert "p1" in md and "LEAK" in md


def test_confound_report_on_confounded_synthetic(synthetic):
    mix, conf = synthetic
    assert confound_report(mix).warnings == []
    rep = confound_report(balanced_split(conf, n_train=20, n_test=10))
    w = "\n".join(rep.warnings)
    assert "source=site_c occurs only in class COVID-19: source identifies class" in w
    assert "age_group=pediatric never occurs in class COVID-19: age identifies class" in w
    f = rep.to_frame()
    assert {"split", "factor", "value", *CLASSES} <= set(f.columns) and {"train", "test", "all"} <= set(
        f["split"]
    )
    assert "| split |" in rep.to_markdown()


def _hospitals(view_normal_pa: float) -> pd.DataFrame:
    """Two hospitals: `h` with 100 normal and 100 pneumonia films, a share ``view_normal_pa`` of its normals
    PA and the same share of its pneumonias AP (cxr-real v2's rsna: 0.82 / 0.77); `c` with 100 COVID-19
    films, half AP and half PA."""
    n_pa = round(100 * view_normal_pa)
    views = {"normal": ["PA"] * n_pa + ["AP"] * (100 - n_pa),
             "pneumonia": ["AP"] * n_pa + ["PA"] * (100 - n_pa), "COVID-19": ["AP", "PA"] * 50}
    rows = [{"path": f"/{c}/{i}.png", "label": c, "patient_id": f"{c}{i}", "age_group": "adult",
             "source": "c" if c == "COVID-19" else "h", "view": v}
            for c, vs in views.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_confound_report_finds_a_view_that_goes_with_a_class_within_a_source():
    rep = confound_report(_hospitals(0.8))
    tail = "80 % of its 100 images, 50 % of all 200 there"
    assert f"view=AP goes with class pneumonia within source=h: {tail}" in rep.warnings
    assert f"view=PA goes with class normal within source=h: {tail}" in rep.warnings
    assert not any("within source=c" in w for w in rep.warnings)  # c's views are 50/50 in its one class
    assert "**view** (images per class)" in rep.to_markdown()
    view = rep.to_frame().query("factor == 'view' and split == 'all'").set_index("value")
    assert view.loc["AP", ["normal", "pneumonia", "COVID-19"]].tolist() == [20, 80, 50]
    # below the threshold (70 %: 70 % against 50 % is a lift of 20 points) there is nothing to say about view
    assert not any(w.startswith("view=") for w in confound_report(_hospitals(0.7)).warnings)


def test_confound_report_says_when_a_view_identifies_a_class():
    frame = _hospitals(0.8)
    frame.loc[frame.index[frame["label"] == "pneumonia"][:20], "view"] = "AP Supine"  # 20 of h's pneumonias
    rep = confound_report(frame)
    assert "view=AP Supine occurs only in class pneumonia: view identifies class" in rep.warnings
    # an identifying value is not repeated as one that "goes with" a class (within h it is 100 % pneumonia)
    assert not any(w.startswith("view=AP Supine goes with") for w in rep.warnings)
