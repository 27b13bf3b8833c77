"""`pepx export` a tiny run (calibrated bundle, card, ONNX / TorchScript parity) and `pepx predict` on a
folder of good and bad files, with Grad-CAM files; CLI numbers equal Python's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fakes.images import make_dicom, ramp
from pepx.cli import main
from pepx.errors import ConfigError
from pepx.release.settings import ExportSettings
from pepx.serving import Predictor, load_bundle
from pepx.training import TrainConfig, fit

pytestmark = pytest.mark.slow
TINY = ["data=synthetic:n_per_class=24,size=64", "n_train=12", "n_test=6", "n_val=6", "image_size=32",
        "model_kwargs.width=0.25", "batch_size=8", "epochs=2", "accelerator=cpu", "progress=false",
        "num_threads=1", "loss=focal"]


HISTORY = [{"version": "0.0.9", "test": "accuracy 0.123 on the old data"}]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    old = os.environ.get("PEPX_CACHE")
    os.environ["PEPX_CACHE"] = str(root / "cache")
    try:
        run = fit(TrainConfig().with_overrides(TINY), root / "run")
        (root / "history.json").write_text(json.dumps(HISTORY))
        assert main(["export", str(run), "--out", str(root / "bundle"), "--format", "onnx", "torchscript",
                     "--n-boot", "100", "--id", "tiny", "--target", "COVID-19=0.9",
                     "--history", str(root / "history.json")]) == 0
    finally:
        if old is None:
            os.environ.pop("PEPX_CACHE", None)
        else:
            os.environ["PEPX_CACHE"] = old
    return run, root / "bundle"


def test_export_writes_a_calibrated_bundle_with_card_and_exports(exported, capsys):
    run, folder = exported
    bundle = load_bundle(folder)
    cfg = bundle.config
    assert bundle.id == "tiny" and bundle.image_size == 32 and cfg["architecture"]["name"] == "pepx_resnet"
    assert cfg["calibration"]["fitted_on"].startswith("the run's validation split (18 images)")
    assert 0.05 <= bundle.temperature <= 20 and set(bundle.thresholds) == {"COVID-19"}
    assert cfg["operating_points"]["COVID-19"]["val_sensitivity"] >= 0.9
    assert cfg["training"]["split_counts"]["test"] == {"normal": 6, "pneumonia": 6, "COVID-19": 6}
    assert len(cfg["checks"]["images"]) == 12 and {"accuracy", "auroc_macro"} <= set(cfg["test_metrics"])
    for fmt in ("onnx", "torchscript"):
        assert cfg["exports"][fmt]["parity_max_abs_prob_diff"] < 1e-4
        assert cfg["exports"][fmt]["parity_inputs"] == "12 test images"
    card = bundle.card
    for heading in ("## Intended use", "## Training", "## Test metrics", "## Calibration",
                    "## Operating points", "## Test metrics by age group", "## Known failure modes",
                    "## Reference predictions"):
        assert heading in card, heading
    assert "Research use only" in card and bundle.sha256 in card
    n_train = sum(cfg["training"]["split_counts"]["train"].values())  # the card says what it was trained on
    assert f"It was trained on {n_train} synthetic films drawn by pepx (not radiographs)" in card
    assert "few thousand" not in card
    # issue 15 item 5: the card leads with the adults-only table (by view) and its known failures, keeps the
    # history, and gives each class predicted among the adult test films its caveat
    order = ("## Intended use", "## Adults only", "### Adults by view", "## Known failure modes", "## Use it",
             "## Test metrics (")
    assert [card.index(h) for h in order] == sorted(card.index(h) for h in order)
    assert cfg["history"] == HISTORY and "## History" in card and "accuracy 0.123 on the old data" in card
    preds = pd.read_csv(run / "bundle_report" / "predictions.csv")
    adults = preds[preds["age_group"] == "adult"]
    called = adults["y_pred"].map(dict(enumerate(("normal", "pneumonia", "COVID-19")))).value_counts()
    assert set(cfg["caveats"]) == set(called.index)
    for cls, n in called.items():
        assert cfg["caveats"][cls].startswith(f"Of the {n} adult test films this model called "), cls
        assert cfg["caveats"][cls] in card
    for name in ("report.md", "roc.png", "calibration.png", "reliability.png", "gate/report.md"):
        assert (run / "bundle_report" / name).stat().st_size > 0
    # the input gate, fitted on the run's train / val films and measured on its test films (issue 16)
    gate = bundle.gate
    assert gate is not None and gate.layers == ("layer1", "layer2", "layer3", "layer4")
    assert cfg["gate"]["fitted_on"]["train_films"] == 36 and cfg["gate"]["fitted_on"]["val_films"] == 18
    assert "## Input gate" in card and f">= {gate.reject:.3f}" in card
    # the reference predictions are what the bundle gives those images (the network's numbers: the tiny
    # untrained-looking run's gate may reject some; tests/serving/test_serving_gate*.py test the gate)
    predictor = Predictor(bundle, device="cpu", gate=False)
    paths = [c["path"] for c in cfg["checks"]["images"]]  # absolute: synthetic is no csv / folder source
    got = np.array([list(p.probabilities.values()) for p in predictor.predict(paths)])
    assert np.abs(got - np.array([c["probabilities"] for c in cfg["checks"]["images"]])).max() < 1e-5


def test_export_of_a_bundle_to_onnx_and_runtime_onnx_agrees(exported, tmp_path, capsys):
    _, folder = exported
    assert main(["export", str(folder), "--out", str(tmp_path / "copy"), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "onnx:" in out and "max |p - p_eager|" in out
    paths = [c["path"] for c in load_bundle(folder).config["checks"]["images"]]
    torch_p = Predictor.from_bundle(tmp_path / "copy", device="cpu", gate=False).predict(paths)
    onnx_p = Predictor.from_bundle(tmp_path / "copy", runtime="onnx", gate=False).predict(paths)
    a = np.array([list(p.probabilities.values()) for p in torch_p])
    b = np.array([list(p.probabilities.values()) for p in onnx_p])
    assert np.abs(a - b).max() < 1e-4
    # with the gate on, ONNX Runtime's predictions carry the same verdicts (features from the torch network)
    gated = [Predictor.from_bundle(tmp_path / "copy", runtime=r, device="cpu").predict(paths)
             for r in ("torch", "onnx")]
    assert [p.gate for p in gated[0]] == [p.gate for p in gated[1]]
    assert all(p.gate.outcome != "off" for p in gated[1])


def good_and_bad_folder(root: Path) -> dict[str, str]:
    """Three good films (one in a sub-folder, one 16-bit, one DICOM) and four bad files; name -> expected."""
    (root / "sub").mkdir(parents=True)
    yy, xx = np.mgrid[0:90, 0:70]
    film = (0.5 + 0.4 * np.sin(yy / 9.0) * np.cos(xx / 6.0)).astype(np.float32)
    Image.fromarray((film * 255).astype(np.uint8)).save(root / "a.png")
    Image.fromarray((film * 65535).astype(np.uint16)).save(root / "sub" / "b.png")
    make_dicom(root / "c.dcm", ramp(64, 48, top=4095))
    data = (root / "a.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "zero.jpg").write_bytes(b"")
    (root / "notes.png").write_text("these are notes, not an image")
    make_dicom(root / "nopixels.dcm", ramp(top=4095), pixels=False)
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return {"a.png": "ok", "sub/b.png": "ok", "c.dcm": "ok", "truncated.png": "truncated",
            "zero.jpg": "empty file", "notes.png": "not an image", "nopixels.dcm": "no pixel data"}


def test_predict_folder_good_and_bad_files_csv_and_cams(exported, tmp_path, capsys):
    _, folder = exported
    expected = good_and_bad_folder(tmp_path / "films")
    code = main(["predict", str(tmp_path / "films"), "--model", str(folder), "--out", str(tmp_path / "p.csv"),
                 "--cam", str(tmp_path / "cams"), "--no-gate"])  # the gate has its own tests
    captured = capsys.readouterr()
    assert code == 0 and "wrote 7 rows" in captured.out and "(3 predicted, 4 unreadable)" in captured.out
    table = pd.read_csv(tmp_path / "p.csv")
    rows = {str(Path(r["source"]).relative_to(tmp_path / "films")): r for r in table.to_dict("records")}
    assert set(rows) == set(expected)
    names = load_bundle(folder).display  # one vocabulary: the bundle's class_display everywhere
    key = {v: k for k, v in names.items()}
    assert list(names.values()) == ["Normal", "Non-COVID", "COVID-19"]
    for name, what in expected.items():
        row = rows[name]
        if what == "ok":
            assert row["status"] == "ok" and row["label"] in ("Normal", "Non-COVID", "COVID-19")
            probs = [row["prob_Normal"], row["prob_Non-COVID"], row["prob_COVID-19"]]
            assert row[f"prob_{row['label']}"] == max(probs)
            assert set(str(row["flagged"]).split(";")) <= {*names.values(), "nan"}
            caveat = load_bundle(folder).config["caveats"].get(key[row["label"]])  # the card's, for the class
            assert row["caveat"] == caveat if caveat else pd.isna(row["caveat"])
            stem = tmp_path / "cams" / name  # the input's own name, suffix included: a.png -> a.png.cam.png
            assert row["cam"] == str(stem) + ".cam.png"
            with Image.open(row["cam"]) as im:
                assert im.mode == "RGB" and im.info["Software"] == "pepx Grad-CAM"
            assert np.load(str(stem) + ".cam.npy").shape == (32, 32)
        else:
            assert row["status"] == "error" and what in row["error"] and pd.isna(row["label"])
            assert f"skipped {tmp_path / 'films' / name}: " in captured.err
    # Python gives the CLI's numbers
    ok = [str(tmp_path / "films" / n) for n, w in expected.items() if w == "ok"]
    for p in Predictor.from_bundle(folder, device="cpu", gate=False).predict(ok):
        row = rows[str(Path(p.source).relative_to(tmp_path / "films"))]
        assert [row[f"prob_{names[c]}"] for c in p.probabilities] == pytest.approx(
            list(p.probabilities.values()), abs=1e-7)
    # JSON output and the printed table
    assert main(["predict", str(tmp_path / "films" / "a.png"), "--model", str(folder), "--out",
                 str(tmp_path / "p.json"), "--no-gate"]) == 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["status"] == "ok"
    assert main(["predict", str(tmp_path / "films" / "*.png"), "--model", str(folder), "--no-gate"]) == 0
    printed = capsys.readouterr().out
    # compact: file names (full paths stay in --out), display names, the legend of `flagged` when one is
    head = next(line for line in printed.splitlines() if line.startswith("file "))
    assert head.split()[:5] == ["file", "class", "Normal", "Non-COVID", "COVID-19"] and "|" not in printed
    assert "\na.png " in printed and str(tmp_path / "films") not in printed and "not an image" in printed
    assert "pneumonia" not in printed.replace("Non-COVID", "")
    point = load_bundle(folder).config["operating_points"]["COVID-19"]
    legend = (f"\nflagged: the class's probability reached its operating point (COVID-19 >= "
              f"{point['threshold']:.3f}, chosen for {100 * point['target_sensitivity']:.0f} % sensitivity")
    assert (legend in printed) == isinstance(rows["a.png"]["flagged"], str)  # printed when a row is flagged
    caveats = load_bundle(folder).config["caveats"]
    for label in {key[r["label"]] for r in rows.values() if r["status"] == "ok"} & set(caveats):
        assert f"model card on {names[label]} calls: {caveats[label]}" in printed


def test_predict_with_nothing_readable_exits_non_zero(exported, tmp_path, capsys):
    _, folder = exported
    (tmp_path / "bad.png").write_bytes(b"")
    bad = [str(tmp_path / "bad.png"), str(tmp_path / "missing.png")]
    assert main(["predict", *bad, "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "none of the 2 inputs could be read" in err and "missing.png: file not found" in err


def test_predict_straight_from_a_run_folder(exported, tmp_path, capsys):
    run, _ = exported
    good_and_bad_folder(tmp_path / "films")
    assert main(["predict", str(tmp_path / "films" / "a.png"), "--model", str(run)]) == 0
    first = capsys.readouterr().out.splitlines()[0]  # never "uncalibrated (calibrated probabilities ...)"
    assert first.startswith(f"run {run.name} (probabilities not calibrated: a run folder")
    assert "uncal" not in first


def test_export_calibrates_on_other_data_but_refuses_the_training_patients(exported, tmp_path, capsys):
    run, _ = exported
    other = "synthetic:n_per_class=8,size=64,seed=1"  # other patients (ids carry the seed)
    assert main(["export", str(run), "--out", str(tmp_path / "b"), "--calibrate", other, "--target",
                 "--n-boot", "50", "--report", str(tmp_path / "report")]) == 0
    bundle = load_bundle(tmp_path / "b")
    assert bundle.config["calibration"]["fitted_on"] == f"{other} (24 images)" and bundle.thresholds == {}
    same = "synthetic:n_per_class=24,size=64"  # the data the run trained on
    assert main(["export", str(run), "--out", str(tmp_path / "c"), "--calibrate", same]) == 2
    assert "patients are also in the run's training split" in capsys.readouterr().err


def test_export_settings_are_checked_before_anything_is_read_or_written(exported, tmp_path, capsys):
    """`ExportSettings` (pydantic, issue 19): a bad value is one line naming the option, exit 2, and no
    folder is made; from Python, an unknown name says which one was meant."""
    run, _ = exported
    for argv, message in (
            (["--n-boot", "1000000000"],
             "pepx export: error: --n-boot 1000000000: must be a number in [1, 100000]"),
            (["--target", "lungs=0.9"], "pepx export: error: --target: operating point for unknown class(es) "
                                        "['lungs']; classes: normal, pneumonia, COVID-19")):
        assert main(["export", str(run), "--out", str(tmp_path / "b"), *argv]) == 2
        assert capsys.readouterr().err.strip() == message
        assert not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match=r"^ExportSettings: unknown setting 'boot' \(did you mean 'n_boot'"):
        ExportSettings(boot=10)
    with pytest.raises(ConfigError, match=r"^--fp32 'no': "):
        ExportSettings(half="no")
    assert ExportSettings().operating_targets == {"COVID-19": 0.95}
    assert ExportSettings(targets={}).operating_targets == {}
