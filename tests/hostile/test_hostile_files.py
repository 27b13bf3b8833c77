"""Hostile probe, part 1 (issue 17): predict, data, export, evaluate and models on a workspace of real files -
inputs next to outputs, FIFOs, links to devices, link loops, non-UTF-8 names, one image under two labels,
damaged bundles. Every case is checked by `hostile_kit.run_case`: no hang, no traceback, no file outside the
command's own new output touched, then the exit status and the one-line message (see hostile_kit)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from hostile_kit import Case, fail, release_fifo, run_case
from hostile_make import (
    NON_UTF8,
    bundle_variant,
    film,
    relink,
    set_path,
    special_folder,
)

from fakes.bundles import make_bundle
from fakes.images import make_dicom, ramp
from pepx.training import TrainConfig, fit

B = "{ws}/bundles/ok"
#: Cases that, unrefused, would allocate tens of GB (PEPX_PROBE_SAFE=1 skips them: the probe of old code).
DANGEROUS = {"models-size-huge", "models-width-huge", "models-in-chans-huge", "models-classes-huge",
             "bundle-image-size-huge", "evaluate-n-boot-huge", "reproduce-jobs-huge"}
TINY_RUN = ["data=synthetic:n_per_class=24,size=64", "n_train=8", "n_val=4", "n_test=4", "image_size=32",
            "model_kwargs.width=0.25", "batch_size=12", "epochs=1", "accelerator=cpu", "progress=false",
            "num_threads=1"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hostile_files")
    films = root / "films"
    for i, name in enumerate(["a.png", "a.jpg", "x/b.png", "y/b.png"]):
        film(films / name, i)
    make_dicom(films / "a.dcm", (ramp(64, 64) / 255 * 4095).round())
    special_folder(root / "special")
    pd.DataFrame({"path": ["films/a.png", "films/x/b.png", "films/y/b.png", "films/a.jpg"],
                  "label": ["normal", "pneumonia", "COVID-19", "normal"],
                  "patient_id": ["p1", "p2", "p3", "p4"]}).to_csv(root / "meta.csv", index=False)
    pd.DataFrame({"path": ["films/a.png", "films/a.png", "films/x/b.png"],
                  "label": ["normal", "COVID-19", "pneumonia"],
                  "patient_id": ["p1", "p9", "p2"]}).to_csv(root / "conflict.csv", index=False)
    (root / "notes").mkdir()
    (root / "notes" / "keep.txt").write_text("a user's notes\n")
    (root / "secret.txt").write_text("not for the web\n")
    (root / "existing.csv").write_text("keep me\n")
    (root / "old_preds.csv").write_text("source,status\nold,ok\n")
    os.symlink("secret.txt", root / "link.csv")
    os.mkfifo(root / "fifo.csv")
    ok = root / "bundles" / "ok"
    make_bundle(ok)
    variants = {
        "readme_link": relink("README.md", str(root / "secret.txt")),
        "weights_link": relink("model.safetensors", str(ok / "model.safetensors")),
        "weights_up": set_path("weights.file", "../ok/model.safetensors"),
        "weights_abs": set_path("weights.file", str(ok / "model.safetensors")),
        "format_text": set_path("format_version", "abc"),
        "size_huge": set_path("input.image_size", 100_000_000),
        "size_bool": set_path("input.image_size", True),
        "classes_dup": set_path("classes", ["normal", "normal", "COVID-19"]),
        "display_short": set_path("class_display", ["Normal", "Non-COVID"]),
        "op_unknown": set_path("operating_points", {"flu": {"threshold": 0.5}}),
        "temp_huge": set_path("calibration.temperature", 1e9),
        "crop_big": set_path("preprocess.settings.top_crop", 0.9),
        "future_setting": set_path("preprocess.settings.denoise", "nlm"),
        "export_up": set_path("exports", {"onnx": {"file": "../../secret.txt", "sha256": "0" * 64}}),
        "kwargs_text": set_path("architecture.kwargs", {"width": "wide"}),
        "other_id": set_path("id", "other"),
    }
    for name, edit in variants.items():
        bundle_variant(ok, root / "bundles" / name, edit)
    text = (ok / "config.json").read_text()
    nan = text.replace('"temperature": 1.7', '"temperature": NaN')
    bundle_variant(ok, root / "bundles" / "temp_nan", raw=nan)
    bundle_variant(ok, root / "bundles" / "not_object", raw="[1, 2, 3]\n")
    cache = os.environ.get("PEPX_CACHE")
    fit(TrainConfig().with_overrides(TINY_RUN), root / "run")
    assert os.environ.get("PEPX_CACHE") == cache
    yield root
    for fifo in (root / "special" / "normal" / "pipe.png", root / "fifo.csv"):
        release_fifo(fifo)


# --------------------------------------------------------------------------- checks of results
def _cams_unique(ws: Path, status: int, out: str, err: str) -> None:
    cams = ws / "out" / "cams1"
    pngs = sorted(p.relative_to(cams).as_posix() for p in cams.rglob("*.png"))
    assert len(pngs) == 5 and len(list(cams.rglob("*.npy"))) == 5, pngs
    table = pd.read_csv(ws / "out" / "cams1.csv")
    assert table["cam"].nunique() == 5 and all(Path(c).is_file() for c in table["cam"])


SPECIAL_REASONS = {"pipe.png": "FIFO", "zero.png": "character device", "loop.png": "symbolic link loop",
                   "broken.png": "broken symbolic link", "up": "link to a folder"}


def _special_rows(ws: Path, status: int, out: str, err: str) -> None:
    table = pd.read_csv(ws / "out" / "special.csv")
    rows = {Path(s).name: r for s, r in zip(table["source"], table.to_dict("records"), strict=True)}
    for name, reason in SPECIAL_REASONS.items():
        row = rows.get(name)
        assert row is not None and row["status"] == "error" and reason in row["error"], row
    shown = "caf\\xe9.png"
    assert shown in rows and rows[shown]["status"] == "ok", sorted(rows)
    assert rows["good.png"]["status"] == "ok" and rows["same.png"]["status"] == "ok"


def _inspect_special(ws: Path, status: int, out: str, err: str) -> None:
    for reason in (*SPECIAL_REASONS.values(), "label conflict", "caf\\xe9.png"):
        assert reason in out, reason


def _old_kept(name: str, text: str):
    def check(ws: Path, status: int, out: str, err: str) -> None:
        assert (ws / name).read_text() == text
    return check


GPU_ABSENT = not torch.cuda.is_available()
P = ["predict", "{ws}/films/a.png", "--model"]
CASES = [
    # -------------------------------------------------------------- predict: never write over an input
    Case("cam-is-the-input-folder", ["predict", "{ws}/films", "--model", B, "--cam", "{ws}/films"],
         message="--cam {ws}/films: holds input"),
    Case("cam-holds-an-input", [*P, B, "--cam", "{ws}"], message="holds input"),
    Case("cam-inside-an-input-folder", ["predict", "{ws}/films", "--model", B, "--cam", "{ws}/films/cams"],
         message="inside the input folder"),
    Case("cam-names-unique", ["predict", "{ws}/films", "--model", B, "--cam", "{ws}/out/cams1", "--out",
                              "{ws}/out/cams1.csv"], status=0, outputs=["out"], check=_cams_unique),
    Case("out-format-checked-before-cams", ["predict", "{ws}/films", "--model", B, "--cam", "{ws}/out/cams2",
                                           "--out", "{ws}/out/preds.txt"], message="use a .csv or .json"),
    Case("out-is-a-folder", [*P, B, "--out", "{ws}/notes"], message="--out {ws}/notes: is a folder"),
    Case("out-is-an-input", ["predict", "{ws}/existing.csv", "--model", B, "--out", "{ws}/existing.csv"],
         message="is one of the inputs"),
    Case("out-through-a-symlink", [*P, B, "--out", "{ws}/link.csv"], status=0, outputs=["link.csv"],
         security=True, check=_old_kept("secret.txt", "not for the web\n")),
    Case("cam-layer-unknown", [*P, B, "--cam", "{ws}/out/cams3", "--cam-layer", "layer9", "--out",
                               "{ws}/out/p3.csv"],
         message="--cam-layer 'layer9': not a layer of PEPXResNet; choose one of"),
    Case("device-unknown", [*P, B, "--device", "gpu0"], message="--device 'gpu0': choose one of"),
    pytest.param(Case("device-cuda-absent", [*P, B, "--device", "cuda"], message="--device 'cuda'"),
                 marks=pytest.mark.skipif(not GPU_ABSENT, reason="a GPU is visible"),
                 id="device-cuda-absent"),
    Case("device-cuda-index", [*P, B, "--device", "cuda:99"], message="--device 'cuda:99'"),
    # -------------------------------------------------------------- predict / inspect: special files
    Case("predict-special-folder", ["predict", "{ws}/special", "--model", B, "--out", "{ws}/out/special.csv"],
         status=0, outputs=["out"], stderr_lines=5, check=_special_rows, timeout=60),
    Case("predict-fifo", ["predict", "{ws}/special/normal/pipe.png", "--model", B], stderr_lines=2,
         message="FIFO", timeout=30),
    Case("predict-non-utf8-name", ["predict", f"{{ws}}/special/normal/{NON_UTF8}", "--model", B], status=0,
         message="caf\\xe9.png"),
    Case("inspect-special-folder", ["data", "inspect", "folder:{ws}/special"], status=0,
         check=_inspect_special, timeout=60),
    Case("predict-out-is-a-fifo", [*P, B, "--out", "{ws}/fifo.csv"], message="FIFO", timeout=30),
    Case("split-out-is-a-fifo", ["data", "split", "csv:{ws}/meta.csv", "--n-train", "1", "--n-test", "0",
                                 "--out", "{ws}/fifo.csv"], message="FIFO", timeout=30),
    Case("inspect-csv-is-a-fifo", ["data", "inspect", "csv:{ws}/fifo.csv"], message="FIFO", timeout=30),
    Case("inspect-label-conflict", ["data", "inspect", "csv:{ws}/conflict.csv", "--no-decode"], status=0,
         message="label conflict"),
    # -------------------------------------------------------------- bundles: validated whole
    Case("bundle-readme-symlink", [*P, "{ws}/bundles/readme_link"], message="README.md", security=True),
    Case("bundle-weights-symlink", [*P, "{ws}/bundles/weights_link"], message="model.safetensors",
         security=True),
    Case("bundle-weights-outside", [*P, "{ws}/bundles/weights_up"], message="weights.file", security=True),
    Case("bundle-weights-absolute", [*P, "{ws}/bundles/weights_abs"], message="weights.file", security=True),
    Case("bundle-export-outside", [*P, "{ws}/bundles/export_up", "--runtime", "onnx"], message="exports",
         security=True),
    Case("bundle-export-copies-symlink", ["export", "{ws}/bundles/readme_link", "--out", "{ws}/out/copy1"],
         message="README.md", security=True),
    Case("bundle-format-version-text", [*P, "{ws}/bundles/format_text"], message="format_version"),
    Case("bundle-image-size-huge", [*P, "{ws}/bundles/size_huge"], message="input.image_size"),
    Case("bundle-image-size-bool", [*P, "{ws}/bundles/size_bool"], message="input.image_size"),
    Case("bundle-classes-twice", [*P, "{ws}/bundles/classes_dup"], message="classes"),
    Case("bundle-display-mismatch", [*P, "{ws}/bundles/display_short"], message="class_display"),
    Case("bundle-op-unknown-class", [*P, "{ws}/bundles/op_unknown"], message="operating_points"),
    Case("bundle-temperature-nan", [*P, "{ws}/bundles/temp_nan"], message="calibration.temperature"),
    Case("bundle-temperature-huge", [*P, "{ws}/bundles/temp_huge"], message="calibration.temperature"),
    Case("bundle-crop-too-big", [*P, "{ws}/bundles/crop_big"], message="top_crop"),
    Case("bundle-unknown-preprocess", [*P, "{ws}/bundles/future_setting"], message="denoise"),
    Case("bundle-kwargs-type", [*P, "{ws}/bundles/kwargs_text"], message="width"),
    Case("bundle-config-not-object", [*P, "{ws}/bundles/not_object"], message="config.json"),
    # -------------------------------------------------------------- data split
    Case("split-out-onto-its-source", ["data", "split", "csv:{ws}/meta.csv", "--n-train", "1", "--n-test",
                                       "0", "--out", "{ws}/meta.csv"], message="the data source"),
    Case("split-out-onto-an-image", ["data", "split", "csv:{ws}/meta.csv", "--n-train", "1", "--n-test",
                                     "0", "--out", "{ws}/films/a.png"], message="one of the source's images"),
    # -------------------------------------------------------------- export / evaluate: output folders
    Case("export-out-not-empty", ["export", "{ws}/run", "--out", "{ws}/notes"], message="--force"),
    Case("export-out-other-bundle", ["export", "{ws}/run", "--out", B], message="holds bundle 'tiny'"),
    Case("export-bundle-onto-other", ["export", B, "--out", "{ws}/bundles/other_id"],
         message="holds bundle 'other'"),
    Case("export-out-is-the-run", ["export", "{ws}/run", "--out", "{ws}/run", "--force"],
         message="the run folder"),
    Case("export-report-is-the-run", ["export", "{ws}/run", "--out", "{ws}/out/exp_r", "--report",
                                      "{ws}/run"], message="--report"),
    Case("export-out-is-a-file", ["export", "{ws}/run", "--out", "{ws}/existing.csv"],
         message="existing.csv"),
    Case("export-fresh", ["export", "{ws}/run", "--out", "{ws}/out/exp", "--n-boot", "20"], status=0,
         outputs=["out", "run/bundle_report"], timeout=180),
    Case("export-again-same-id", ["export", "{ws}/run", "--out", "{ws}/out/exp", "--n-boot", "20"], status=0,
         outputs=["out", "run/bundle_report"], timeout=180),
    Case("evaluate-out-is-the-run", ["evaluate", "{ws}/run", "--out", "{ws}/run", "--n-boot", "20"],
         message="the run folder"),
    Case("evaluate-out-is-a-bundle", ["evaluate", "{ws}/run", "--out", B, "--n-boot", "20"],
         message="bundle"),
    Case("evaluate-n-boot-huge", ["evaluate", "{ws}/run", "--n-boot", "1000000000"], message="n_boot"),
    # -------------------------------------------------------------- models, reproduce: ranges
    Case("reproduce-jobs-huge", ["reproduce", "--jobs", "100000", "--out", "{ws}/out/rep"], message="--jobs"),
    Case("models-size-huge", ["models", "--size", "100000"], message="--size"),
    Case("models-width-huge", ["models", "--width", "1000"], message="--width"),
    Case("models-in-chans-huge", ["models", "--in-chans", "100000"], message="--in-chans"),
    Case("models-classes-huge", ["models", "--num-classes", "10000000"], message="--num-classes"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) if isinstance(c, Case) else c for c in CASES])
def test_hostile_case(ws, capsys, monkeypatch, case):
    if case.id in DANGEROUS and os.environ.get("PEPX_PROBE_SAFE"):
        pytest.skip("would exhaust the machine unrefused (PEPX_PROBE_SAFE)")
    monkeypatch.delenv("PEPX_DEBUG", raising=False)
    run_case(case, ws, capsys)


# --------------------------------------------------------------------------- a full disk, mid-write
def _disk_full_after_half(monkeypatch, method: str) -> None:
    """`pandas.DataFrame.<method>` writes half its text, then fails as a full disk does."""
    original = getattr(pd.DataFrame, method)

    def half_then_full(self, path_or_buf=None, *args, **kwargs):
        text = original(self, None, *args, **kwargs)
        with open(path_or_buf, "w") as fh:
            fh.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, method, half_then_full)


def test_disk_full_keeps_the_old_predictions(ws, capsys, monkeypatch):
    _disk_full_after_half(monkeypatch, "to_csv")
    run_case(Case("predict-disk-full", [*P, B, "--out", "{ws}/old_preds.csv"],
                  message="No space left on device"), ws, capsys)


def test_disk_full_keeps_the_old_split(ws, capsys, monkeypatch):
    _disk_full_after_half(monkeypatch, "to_csv")
    run_case(Case("split-disk-full", ["data", "split", "csv:{ws}/meta.csv", "--n-train", "1", "--n-test", "0",
                                      "--out", "{ws}/existing.csv"], message="No space left on device"),
             ws, capsys)


def test_a_cam_folder_holding_foreign_files_is_refused(ws, capsys):
    """A file already at a heat map's name that pepx did not write is never written over."""
    cams = ws / "out" / "foreign"
    cams.mkdir(parents=True)
    (cams / "a.png.cam.png").write_text("a user's file\n")
    run_case(Case("cam-foreign-file", [*P, B, "--cam", str(cams)], message="not written by pepx"), ws, capsys)
    if (cams / "a.png.cam.png").read_text() != "a user's file\n":
        fail("data loss", "the foreign file was overwritten")


def test_the_same_image_under_two_labels_is_a_conflict(ws):
    from pepx.data import load_source

    result = load_source(f"csv:{ws / 'conflict.csv'}")
    reasons = [p.reason for p in result.problems]
    if sum("label conflict" in r for r in reasons) != 2 or len(result.manifest) != 1:
        fail("wrong", f"{reasons}; {len(result.manifest)} rows kept")
    assert json.dumps(reasons)  # the reasons are plain text
