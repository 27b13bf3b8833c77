"""The input gate (issue 16): fitted on a tiny bundle and synthetic films, it rejects images that are not
frontal chest X-rays (made here: blank, noise, inverted, rotated), marks far films unfamiliar, reads DICOM
headers; its arrays and thresholds round-trip through the bundle; bad gate sections are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from fakes.bundles import SIZE, make_bundle
from fakes.images import make_dicom
from pepx.cli import main
from pepx.data import read_image
from pepx.errors import BundleError
from pepx.serving import Predictor, load_bundle
from pepx.serving.files import print_table, write_predictions
from pepx.serving.gate.card import gate_card
from pepx.serving.gate.features import FeatureTap
from pepx.serving.gate.fit import fit_gate, gaussians, source_balanced
from pepx.serving.gate.model import GateModel
from pepx.serving.gate.ood import group_of, read_ood
from pepx.serving.gate.stats import fpr_at_tpr, rate, separation
from pepx.serving.gate.synthetic import EVAL_KINDS, corrupt, framed


@pytest.fixture(scope="module")
def predictor(gated):
    return Predictor(gated[2], device="cpu")


def _test_images(split: pd.DataFrame) -> list[np.ndarray]:
    return [read_image(p) for p in split.loc[split["split"] == "test", "path"]]


def test_films_pass_and_images_of_other_kinds_are_rejected(gated, predictor):
    _, split, _ = gated
    films = _test_images(split)
    preds = predictor.predict(films)
    passed = [p.gate.outcome in ("ok", "unfamiliar") and p.label is not None for p in preds]
    assert np.mean(passed) >= 0.9  # thresholds reject 1 % of validation films
    rng = np.random.default_rng(123)
    for kind in EVAL_KINDS:
        preds = predictor.predict([corrupt(im, kind, rng) for im in films[:10]])
        rejected = [p.gate.rejected and p.label is None and p.probabilities == {} for p in preds]
        assert np.mean(rejected) >= 0.9, kind
    blank = [np.zeros((40, 40), np.float32), np.full((2, 2), 0.5, np.float32)]
    assert all(p.gate.reason == "the image is blank (a single grey level)" for p in predictor.predict(blank))
    # --no-gate: the same predictor without the gate gives a class to anything
    plain = Predictor(gated[2], device="cpu", gate=False)
    assert plain.gate_status == "off (turned off)"
    assert all(p.label is not None and p.gate.outcome == "off" for p in plain.predict(blank))


def test_unfamiliar_keeps_its_class_with_the_reason(gated, tmp_path):
    _, split, bundle = gated
    films = _test_images(split)[:6]
    distance = np.array([p.gate.distance for p in Predictor(bundle, device="cpu").predict(films)])
    cut = float(np.median(distance))  # half the films now count as far from the training films
    section = {**bundle.config["gate"], "thresholds": {"reject": 1.0, "unfamiliar": max(cut, 0.0)}}
    strict = Predictor(bundle.with_changes(config={"gate": section}).save(tmp_path / "b"), device="cpu")
    preds = strict.predict(films)
    far = [p for p in preds if p.gate.outcome == "unfamiliar"]
    assert far and len(far) == int((distance >= max(cut, 0.0)).sum())
    assert all(p.label is not None and len(p.probabilities) == 3 for p in far)
    assert all(p.gate.reason.startswith("unlike the films this model was trained on") for p in far)
    row = far[0].to_row()
    assert row["gate"] == "unfamiliar" and row["gate_distance"] == far[0].gate.distance
    table = print_table(preds)
    assert " gate " in table.splitlines()[0] and "unfamiliar" in table
    assert "treat the class with caution" in table


def test_csv_and_json_carry_the_gate(predictor, tmp_path):
    preds = predictor.predict([np.zeros((30, 30), np.float32)])
    frame = pd.read_csv(write_predictions(preds, tmp_path / "p.csv", classes=predictor.classes,
                                          names=predictor.bundle.display))
    assert list(frame.columns[:6]) == ["source", "status", "label", "prob_Normal", "prob_Non-COVID",
                                       "prob_COVID-19"]
    assert frame.loc[0, "gate"] == "rejected" and frame.loc[0, "gate_score"] == 1.0
    assert pd.isna(frame.loc[0, "label"]) and pd.isna(frame.loc[0, "prob_Normal"])
    rows = json.loads(write_predictions(preds, tmp_path / "p.json").read_text())
    assert rows[0]["gate"] == "rejected" and rows[0]["gate_reason"].startswith("the image is blank")


def test_dicom_header_is_used_and_reported(predictor, gated, tmp_path):
    film = _test_images(gated[1])[0]
    pixels = (film * 4095).round()
    ct = make_dicom(tmp_path / "ct.dcm", pixels)
    cr = make_dicom(tmp_path / "cr.dcm", pixels)
    import pydicom

    for path, modality, view in ((ct, "CT", None), (cr, "CR", "PA")):
        ds = pydicom.dcmread(path)
        ds.Modality = modality
        if view:
            ds.ViewPosition = view
        ds.save_as(path)
    lateral = tmp_path / "lat.dcm"
    shutil.copy(cr, lateral)
    ds = pydicom.dcmread(lateral)
    ds.ViewPosition = "LL"
    ds.save_as(lateral)
    got = {p.source: p for p in predictor.predict([ct, cr, lateral])}
    assert got[str(ct)].gate.rejected and got[str(ct)].label is None
    assert "modality CT, not a radiograph" in got[str(ct)].gate.reason
    assert got[str(lateral)].gate.rejected and "lateral film" in got[str(lateral)].gate.reason
    ok = got[str(cr)]
    assert "DICOM Modality CR, ViewPosition PA, PhotometricInterpretation MONOCHROME2" in ok.gate.reason
    assert ok.label is not None and not ok.gate.rejected


def test_features_are_the_networks_own(predictor):
    x = torch.randn(3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    model = predictor._model
    tap = FeatureTap(model, ("layer3", "layer4"))
    logits, feats = tap(x)
    tap.remove()
    with torch.no_grad():
        assert torch.allclose(feats["layer4"], model.forward_head(model.forward_features(x), pre_logits=True),
                              atol=1e-6)
        assert torch.equal(logits, model(x))


def test_mahalanobis_distance_is_sklearns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)) @ rng.normal(size=(5, 5))
    y = np.repeat([0, 1, 2], 30)
    x[y == 1] += 3.0
    means, precision = gaussians({"s": x}, ("s",), y, 3)
    lw = LedoitWolf(assume_centered=True).fit(x - np.stack([x[y == k].mean(0) for k in range(3)])[y])
    new = rng.normal(size=(7, 5))
    expected = np.min([lw.mahalanobis(new - means[0][k]) for k in range(3)], axis=0)
    empty = np.zeros(0, np.float32)
    model = GateModel(("s",), means, precision, np.zeros(1, np.float32), np.ones(1, np.float32), empty,
                      empty, empty, 0.0)
    assert np.allclose(np.exp(model.log_distances({"s": new}))[:, 0], expected, rtol=1e-4)


def _two_sources(seed: int):
    """Features of a large source A and a small source B with a look of its own (offset along another axis
    than A), negatives on both axes beyond them, and fresh B films."""
    rng = np.random.default_rng(seed)

    def pts(n: int, at: float, axis: int = 0, sd: float = 1.0) -> np.ndarray:
        x = rng.normal(0, sd, (n, 6))
        x[:, axis] += at
        return x.astype(np.float32)

    train = np.concatenate([pts(600, 0.0), pts(30, 2.5, 1, 0.7)])
    y = rng.integers(0, 3, len(train))
    sources = np.array(["A"] * 600 + ["B"] * 30)
    negatives = np.concatenate([pts(300, 5.0), pts(300, 5.0, 1)])
    return {"f": train}, y, sources, {"f": negatives}, {"f": pts(200, 2.5, 1, 0.7)}


def test_source_balanced_weights_keep_a_small_source_with_a_look_of_its_own():
    """Issue 16: with films weighing the same, a hospital with few films and its own look (hannover) is
    scored as "not a frontal film"; with every source weighing the same its films score as films."""
    train, y, sources, negatives, fresh_b = _two_sources(0)
    groups = np.arange(len(y)).astype(str)
    w = source_balanced(sources, len(y))
    assert w.mean() == pytest.approx(1.0)
    assert w[sources == "A"].sum() == pytest.approx(w[sources == "B"].sum())
    assert np.array_equal(source_balanced(None, 4), np.ones(4))
    out = {}
    for name, src in (("equal", None), ("balanced", sources)):
        model = fit_gate(train, y, groups, negatives, layers=("f",), sources=src)
        films_a = {"f": train["f"][:600]}
        score_b, score_a, score_neg = (model.scores(f)[0] for f in (fresh_b, films_a, negatives))
        auroc = roc_auc_score(np.r_[np.zeros(len(score_b)), np.ones(len(score_neg))],
                              np.r_[score_b, score_neg])
        out[name] = (np.median(score_b), np.mean(score_b > np.quantile(score_a, 0.99)), auroc)
    assert out["balanced"][0] < 0.6 * out["equal"][0]  # measured 0.118 vs 0.248
    assert out["balanced"][1] < 0.5 * out["equal"][1]  # B films above A's 99th centile: 0.04 vs 0.185
    assert out["balanced"][2] >= out["equal"][2] >= 0.95  # negatives still told apart: 0.989 vs 0.983


def test_framed_films_are_frontal_films_as_another_site_frames_them(gated):
    _, split, bundle = gated
    film = _test_images(split)[0]
    a, b = framed(film, np.random.default_rng(5)), framed(film, np.random.default_rng(5))
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == film.shape
    assert 0.0 <= a.min() and a.max() <= 1.0 and not np.allclose(a, film, atol=0.05)
    assert np.corrcoef(a.ravel(), film.ravel())[0, 1] > 0.3  # the same film, moved and reprocessed
    big = framed(np.tile(film, (8, 8)), np.random.default_rng(5))
    assert max(big.shape) == 224  # acquisition's pixel ranges apply near the network's size
    fitted = bundle.config["gate"]["fitted_on"]
    assert fitted["framed"]["images"] == 60 and fitted["weights"] == "source-balanced"  # 60 training films
    assert "60 of them framed as another site might" in gate_card(bundle.config["gate"])
    assert "(each source weighing the same)" in gate_card(bundle.config["gate"])


def test_thresholds_are_the_validation_quantiles(gated, predictor):
    _, split, bundle = gated
    val = [read_image(p) for p in split.loc[split["split"] == "val", "path"]]
    preds = predictor.predict(val)
    score = np.array([p.gate.score for p in preds])
    distance = np.array([p.gate.distance for p in preds])
    t = bundle.gate.thresholds
    # the verdicts report scores to 6 and distances to 4 decimals: compare within that rounding
    assert (score >= t["reject"] - 5e-7).sum() == 1  # 1 % of 30 rounds up to the highest-scoring film
    assert (distance >= t["unfamiliar"] - 5e-5).sum() == 2  # 5 % of 30: the two farthest
    expected = {"rejected": round(1 / 30, 4), "unfamiliar": round(2 / 30, 4)}
    assert bundle.config["gate"]["validation"] == expected


# --------------------------------------------------------------------------- the bundle file
def test_older_bundle_without_gate_loads_and_says_off(tmp_path, capsys):
    _, bundle = make_bundle(tmp_path / "old")
    assert "gate" not in bundle.config and bundle.gate is None
    predictor = Predictor(bundle, device="cpu")
    assert predictor.gate is None and predictor.gate_status.startswith("off (this bundle has no gate")
    (pred,) = predictor.predict([np.zeros((20, 20), np.float32)])
    assert pred.label is not None and pred.gate.outcome == "off"
    png = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.zeros((20, 20), np.uint8)).save(png)
    assert main(["predict", str(png), "--model", str(tmp_path / "old")]) == 0
    assert "input gate off (this bundle has no gate" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["NaN", -0.5, "Infinity", "\"high\""])
def test_bad_threshold_is_refused_in_one_line(gated, tmp_path, capsys, value):
    folder = tmp_path / "bad"
    shutil.copytree(gated[2].path, folder)
    text = (folder / "config.json").read_text()
    reject = json.loads(text)["gate"]["thresholds"]["reject"]
    (folder / "config.json").write_text(text.replace(f'"reject": {reject}', f'"reject": {value}', 1))
    with pytest.raises(BundleError, match="thresholds.reject"):
        load_bundle(folder)
    png = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((20, 20), np.uint8)).save(png)
    assert main(["predict", str(png), "--model", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "must be a finite number >= 0" in err and str(folder) in err


def test_gate_arrays_are_checked_and_round_trip(gated, tmp_path):
    bundle = gated[2]
    again = bundle.save(tmp_path / "copy")
    gate_file = "gate.safetensors"
    assert (tmp_path / "copy" / gate_file).read_bytes() == (bundle.path / gate_file).read_bytes()
    assert again.gate == bundle.gate
    data = bytearray((tmp_path / "copy" / "gate.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "copy" / "gate.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="fails its checksum"):
        load_bundle(tmp_path / "copy")


def test_gate_file_must_be_a_regular_file_inside_the_bundle(gated, tmp_path):
    # issue 17: a linked gate file passes its checksum (same bytes) but reads a file outside the bundle
    folder = tmp_path / "linked"
    shutil.copytree(gated[2].path, folder)
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(folder / "gate.safetensors", outside)
    (folder / "gate.safetensors").symlink_to(outside)
    with pytest.raises(BundleError, match="gate file gate.safetensors is a symbolic link"):
        load_bundle(folder)
    (folder / "gate.safetensors").unlink()
    config = json.loads((folder / "config.json").read_text())
    config["gate"]["file"] = "../elsewhere.safetensors"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="plain file name"):
        load_bundle(folder)


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_gate_reports_are_never_written_into_a_bundle(gated, tmp_path, capsys):
    root, _, bundle = gated
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.path, copy)
    before = _files(copy)
    split = str(root / "split.csv")
    for argv in (["gate", "evaluate", str(copy), "--split", split, "--out", str(copy), "--n-boot", "20"],
                 ["gate", "fit", str(copy), "--split", split, "--in-place", "--report", str(copy)],
                 ["gate", "evaluate", str(copy), "--split", split, "--out", str(tmp_path / "r"),
                  "--n-boot", "1000000000"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("holds a model bundle" in err or "n_boot" in err), err
    assert _files(copy) == before and not (tmp_path / "r").exists()


def test_gate_fit_command_never_overwrites_silently(gated, tmp_path, capsys):
    root, _, bundle = gated
    plain = root / "plain"
    assert main(["gate", "fit", str(plain), "--split", str(root / "split.csv")]) == 2
    assert "--out NEW_FOLDER" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["gate", "fit", str(plain), "--split", str(root / "split.csv"), "--out", str(taken)]) == 2
    assert (taken / "notes.txt").read_text() == "mine"
    # in place: only the gate changes (weights, the rest of config.json and of the card stay)
    copy = tmp_path / "inplace"
    shutil.copytree(plain, copy)
    before = load_bundle(copy)
    assert main(["gate", "fit", str(copy), "--split", str(root / "split.csv"), "--in-place", "--n-boot", "20",
                 "--report", str(tmp_path / "rep")]) == 0
    after = load_bundle(copy)
    assert after.sha256 == before.sha256 and after.gate is not None
    assert {k: v for k, v in after.config.items() if k != "gate"} == before.config
    assert after.card.startswith(before.card.rstrip("\n")) and "## Input gate" in after.card
    assert after.config["gate"]["evaluation"]["kinds"]["noise"]["auroc"][0] > 0.9
    assert (tmp_path / "rep" / "report.md").is_file()


# --------------------------------------------------------------------------- measuring it
def test_separation_and_rates_are_the_plain_numbers():
    frontal, other = np.array([0.1, 0.2, 0.3, 0.9]), np.array([0.8, 0.95, 0.25])
    sep = separation(frontal, other, ["a", "b", "c", "d"], ["x", "y", "z"], n_boot=200)
    y = np.r_[np.zeros(4), np.ones(3)]
    assert sep["auroc"] == pytest.approx(roc_auc_score(y, np.r_[frontal, other]))
    assert sep["auroc_low"] <= sep["auroc"] <= sep["auroc_high"]
    # catching 95 % of the others needs the threshold at 0.25: 2 of 4 frontal films (0.3, 0.9) reach it
    assert fpr_at_tpr(y, np.r_[frontal, other]) == 0.5
    value, low, high = rate(np.array([True, False, False, False]), ["p", "q", "r", "s"], n_boot=200)
    assert value == 0.25 and low <= 0.25 <= high and high > low


def test_cxr_ood_split_is_grouped_and_fixed(tmp_path):
    names = {"ct": ["cohen_16630_1_1", "cohen_16630_2_1", "cohen_kjr-21-e24-g001-l-b",
                    "cohen_kjr-21-e24-g002-l-c", "cohen_1-s2.0-S0929664620300449-gr3_lrg-a",
                    "cohen_1-s2.0-S0929664620300449-gr3_lrg-b", "cohen_ABC", "cohen_DEF"],
             "lateral": ["cohen_000002-11-b", "cohen_000002-16", "cohen_covid-19-caso-70-1-L",
                         "cohen_x_jumbo-1"],
             "photo": ["skimage_camera", "sklearn_china", "pywt_aero"]}
    rows = [{"filename": f"images/{k}/{n}.png", "kind": k} for k, ns in names.items() for n in ns]
    pd.DataFrame(rows).to_csv(tmp_path / "metadata.csv", index=False)
    assert group_of("cohen_16630_2_1.png") == "16630" and group_of("cohen_000002-11-b.png") == "000002"
    assert group_of("cohen_kjr-21-e24-g002-l-c.png") == "kjr-21-e24"
    assert group_of("cohen_covid-19-caso-70-1-L.png") == "caso-70"
    assert group_of("cohen_x_jumbo-1.png") == "x_jumbo" and group_of("skimage_camera.png") == "camera"
    frame = read_ood(tmp_path)
    assert frame.groupby("group")["part"].nunique().max() == 1  # a group never straddles the split
    for kind, rows_ in frame.groupby("kind"):
        assert (rows_["part"] == "test").mean() >= 0.6, kind
    assert read_ood(tmp_path / "metadata.csv")["part"].tolist() == frame["part"].tolist()


def test_gate_evaluate_reports_unseen_sources(gated, tmp_path):
    root, _, bundle = gated
    out = tmp_path / "report"
    assert main(["gate", "evaluate", str(bundle.path), "--split", str(root / "split.csv"), "--out", str(out),
                 "--unseen", "synthetic:n_per_class=6,size=96", "--n-boot", "50"]) == 0
    scores = pd.read_csv(out / "scores.csv")
    front, unseen = scores[scores["set"] == "frontal"], scores[scores["set"] == "unseen"]
    assert len(front) == 30 and len(unseen) == 18
    assert set(scores.loc[scores["set"] == "synthetic", "kind"]) == set(EVAL_KINDS)
    report = (out / "report.md").read_text()
    for source, rows in unseen.groupby("source"):
        share = (rows["outcome"] == "unfamiliar").mean()
        assert f"| unseen source {source} | {len(rows)} |" in report and f"| {share:.3f} [" in report
    y = np.r_[np.zeros(len(front)), np.ones(len(unseen))]
    auroc = roc_auc_score(y, np.r_[front["distance"], unseen["distance"]])
    assert f"seen-source test films: {auroc:.3f} [" in report
