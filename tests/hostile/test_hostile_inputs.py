"""Every bad input is one clear line on stderr, exit status 2, and nothing written or lost (issue 9, items 8,
9 and 11). Each case runs `pepx.cli.main` in-process on one shared workspace (a finished run, a damaged copy,
stray files); before and after each, every file of the workspace is fingerprinted: none may appear, vanish,
shrink or change. A few cases run the real entry point in a subprocess for its exit status. Runs in `.ci/run`
with the rest of the suite. Issue 17's hostile probe (predict, inspect, split, export, evaluate, models,
train, serve, DICOM; tallied by kind) is beside it: tests/hostile/test_hostile_{files,train,serve,dicom}.py
and tests/hostile/hostile_kit.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from pepx.cli import main
from pepx.training import TrainConfig, fit

SMALL = ["model_kwargs.width=0.25", "image_size=32", "accelerator=cpu", "progress=false", "num_threads=1"]
TRAIN = ["train", "--out", "{ws}/new", *SMALL]
DATA = "synthetic:n_per_class=24,size=64"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace: `run` (finished, no test split), `run_truncated` (model.safetensors cut in half),
    `run_badckpt` (killed run whose checkpoint is damaged), and bad or decoy files."""
    root = tmp_path_factory.mktemp("hostile")
    run = root / "run"
    fit(TrainConfig().with_overrides([f"data={DATA}", "n_train=8", "n_test=0", "epochs=1", "batch_size=12",
                                      *SMALL]), run)
    shutil.copytree(run, root / "run_truncated")
    weights = root / "run_truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(run, root / "run_badckpt")
    (root / "run_badckpt" / "model.safetensors").unlink()
    ckpt = root / "run_badckpt" / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    (root / "bad.yaml").write_text("model: pepx_resnet\nepochs: [1,\n  lr: 0.1\n")
    (root / "notes.txt").write_text("epochs: 3\n")
    (root / "existing.csv").write_text("keep me\n")
    (root / "folder").mkdir()
    Image.new("L", (16, 16), 90).save(root / "image.png")
    (root / "noise.txt").write_bytes(bytes(range(256)) * 16)
    covidx = root / "covidx_no3class"
    covidx.mkdir()
    (covidx / "train_COVIDxSev.txt").write_text("p1 a.png level1 ricord\np2 b.png level2 ricord\n")
    (covidx / "train_COVIDx9B.txt").write_text("p1 a.png negative rsna\np2 b.png positive rsna\n")
    (root / "cohen").mkdir()
    Image.new("L", (16, 16), 90).save(root / "cohen" / "a.png")
    cohen = {"patientid": ["1"], "finding": ["No Finding"], "view": ["PA"], "modality": ["X-ray"],
             "folder": ["."], "filename": ["a.png"]}
    pd.DataFrame(cohen).to_csv(root / "cohen" / "metadata.csv", index=False)
    return root


def fingerprints(root: Path) -> dict[str, tuple]:
    """Every file under ``root``: size and mtime, plus a sha256 of files under 1 MB."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if st.st_size < 1 << 20 else ""
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, digest)
        else:
            out[str(path.relative_to(root))] = ("dir",)
    return out


GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
CASES = [
    # -------------------------------------------------------------- train: configuration (item 8)
    ("model-kwarg-unknown", [*TRAIN, "model_kwargs.foo=1"],
     "model_kwargs.foo: unknown argument; model pepx_resnet takes width, depths, pepx_input"),
    ("model-kwarg-type", [*TRAIN, "model_kwargs.width=abc"], "model_kwargs.width='abc': expected a number"),
    ("model-kwarg-value", [*TRAIN, "model_kwargs.depths=[1,1]"], "depths must be four integers >= 1"),
    ("model-unknown", [*TRAIN, "model=vgg16"], "model='vgg16': choose one of covidnet, pepx_resnet"),
    ("loss-kwarg-unknown", [*TRAIN, "loss=focal", "loss_kwargs.beta=2"],
     "loss_kwargs.beta: unknown argument; loss focal takes gamma, alpha, reduction"),
    ("loss-kwarg-value", [*TRAIN, "loss=focal", "loss_kwargs.gamma=-1"], "gamma must be >= 0"),
    ("loss-unknown", [*TRAIN, "loss=dice"], "loss='dice': choose one of ce, focal"),
    ("in-chans-3", [*TRAIN, "in_chans=3"], "in_chans=3: pepx's datasets yield 1-channel (grey) images"),
    ("devices-0", [*TRAIN, "devices=0"], "devices must be >= 1"),
    ("devices-text", [*TRAIN, "devices=abc"], "devices='abc': use an integer >= 1, auto"),
    ("gpu-without-gpu", [*TRAIN, "accelerator=gpu"], "accelerator=gpu: no CUDA GPU"),
    ("step-size-0", [*TRAIN, "scheduler=step", "lr_step_size=0"], "lr_step_size must be >= 1"),
    ("n-train-0", [*TRAIN, "n_train=0"], "n_train=0: no training images"),
    ("epochs-0", [*TRAIN, "epochs=0"], "epochs must be >= 1"),
    ("lr-negative", [*TRAIN, "lr=-1"], "lr must be > 0"),
    ("eval-split-train", [*TRAIN, "eval_splits=[train]"], "eval_splits: unknown ['train']"),
    ("unknown-key", [*TRAIN, "epoch=3"], "unknown config key 'epoch' (did you mean 'epochs'?)"),
    ("override-not-yaml", [*TRAIN, "lr=[0.1"], "override 'lr=[0.1': not a YAML value"),
    ("malformed-yaml", ["train", "--config", "{ws}/bad.yaml"],
     "bad.yaml: malformed YAML at line 4, column 1"),
    ("missing-config", ["train", "--config", "{ws}/nope.yaml"], "nope.yaml: config file not found"),
    ("config-suffix", ["train", "--config", "{ws}/notes.txt"], "config must end in .yaml, .yml or .toml"),
    # -------------------------------------------------------------- train: data and run folders
    ("data-missing", [*TRAIN, "data=csv:{ws}/nope.csv"], "csv: {ws}/nope.csv does not exist"),
    ("data-is-image", [*TRAIN, "data=covidx:{ws}/image.png"], "is an image (.png), not a label file"),
    ("split-missing", [*TRAIN, "split={ws}/nope.csv"], "nope.csv: no such split file"),
    ("split-too-big", [*TRAIN, f"data={DATA}", "n_train=500"], "class 'normal'"),
    ("out-is-a-file", ["train", "--out", "{ws}/existing.csv", *SMALL, f"data={DATA}", "n_train=8",
                       "n_test=4"],
     "existing.csv: cannot write the run folder"),
    ("out-holds-a-run", ["train", "--out", "{ws}/run", *SMALL],
     "already holds a run (complete: 1 of 1 epochs)"),
    ("resume-complete", ["train", "--resume", "{ws}/run"], "is complete: 1 of 1 epochs: nothing to resume"),
    ("resume-not-a-run", ["train", "--resume", "{ws}/folder"], "config.yaml: not found"),
    ("resume-with-out", ["train", "--resume", "{ws}/run", "--out", "{ws}/x"], "drop --config and --out"),
    ("resume-damaged-ckpt", ["train", "--resume", "{ws}/run_badckpt"], "last.ckpt: damaged checkpoint"),
    # -------------------------------------------------------------- evaluate
    ("eval-n-boot-0", ["evaluate", "{ws}/run", "--n-boot", "0"], "argument --n-boot: must be >= 1, got 0"),
    ("eval-no-test-rows", ["evaluate", "{ws}/run"],
     "the run's split has no test rows (trained with n_test=0?)"),
    ("eval-weights-missing", ["evaluate", "{ws}/run", "--weights", "9"],
     "no weights for epoch 9 (saved epochs: 1)"),
    ("eval-truncated-weights", ["evaluate", "{ws}/run_truncated", "--data", DATA],
     "model.safetensors: cannot load the weights"),
    ("eval-not-a-run", ["evaluate", "{ws}/nowhere"], "nowhere/config.yaml: not found"),
    ("eval-split-not-a-split", ["evaluate", "{ws}/run", "--split", "{ws}/existing.csv"], "not a split file"),
    ("eval-out-is-a-file", ["evaluate", "{ws}/run", "--data", DATA, "--out", "{ws}/existing.csv"],
     "existing.csv: exists and is not a folder"),
    ("eval-bad-source", ["evaluate", "{ws}/run", "--data", "bogus:x"], "bad data source 'bogus:x'"),
    # -------------------------------------------------------------- data
    ("split-out-is-a-folder", ["data", "split", DATA, "--out", "{ws}/folder"],
     "--out {ws}/folder: is a folder"),
    ("split-keeps-existing-file", ["data", "split", DATA, "--n-train", "500", "--out", "{ws}/existing.csv"],
     "class 'normal'"),
    ("split-n-train-0", ["data", "split", DATA, "--n-train", "0"], "argument --n-train: must be >= 1, got 0"),
    ("synthetic-n-0", ["data", "inspect", "synthetic:n_per_class=0"], "synthetic: n_per_class must be >= 1"),
    ("synthetic-size-1", ["data", "inspect", "synthetic:size=1"], "synthetic: size must be >= 16, got 1"),
    ("covidx-png", ["data", "inspect", "covidx:{ws}/image.png"], "image.png is an image (.png)"),
    ("covidx-binary-bytes", ["data", "inspect", "covidx:{ws}/noise.txt"],
     "noise.txt is not a text label file"),
    ("covidx-no-3-class", ["data", "inspect", "covidx:{ws}/covidx_no3class"],
     "no 3-class COVIDx label files"),
    ("cohen-bad-mapping", ["data", "inspect", "cohen:{ws}/cohen?mapping=tv"], "mapping='tv'; choose one of"),
    ("cohen-bad-option", ["data", "inspect", "cohen:{ws}/cohen?colour=1"], "unknown option 'colour=1'"),
    # -------------------------------------------------------------- models, reproduce, the parser
    ("models-size-0", ["models", "--size", "0"], "argument --size: must be >= 1, got 0"),
    ("models-in-chans-0", ["models", "--in-chans", "0"], "argument --in-chans: must be >= 1, got 0"),
    ("models-width-0", ["models", "--width", "0"], "argument --width: must be > 0, got 0"),
    ("reproduce-seeds-0", ["reproduce", "--seeds", "0"], "argument --seeds: must be >= 1, got 0"),
    ("reproduce-epochs-text", ["reproduce", "--epochs", "two"], "expected an integer, got 'two'"),
    ("no-command", [], "the following arguments are required"),
    ("unknown-flag", ["train", "--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("case, argv, message", [
    pytest.param(*c, id=c[0], marks=GPU if c[0] == "gpu-without-gpu" else ()) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(ws, capsys, monkeypatch, case, argv, message):
    monkeypatch.delenv("PEPX_DEBUG", raising=False)
    argv = [a.format(ws=ws) for a in argv]
    before = fingerprints(ws)
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("pepx") and message.format(ws=ws) in lines[0], lines[0]
    assert fingerprints(ws) == before


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only pepx's own errors are user errors: a ValueError from a bug propagates."""
    import pepx.cli

    def broken(args):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(pepx.cli, "_cmd_models", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["models"])


def test_ctrl_c_outside_training_is_one_line_and_exit_130(monkeypatch, capsys):
    import pepx.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pepx.cli, "_cmd_models", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "pepx models: interrupted (SIGINT)\n"


def _entry_point() -> list[str]:
    script = Path(sys.executable).with_name("pepx")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pepx.cli"]


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "{ws}/new", "devices=0"], "devices must be >= 1"),
    (["models", "--size", "0"], "argument --size: must be >= 1"),
    (["data", "inspect", "covidx:{ws}/image.png"], "is an image"),
], ids=["config", "argument", "data"])
def test_the_real_entry_point_exits_2_with_one_line(ws, argv, message):
    env = {**os.environ, "PEPX_DEBUG": ""}
    out = subprocess.run([*_entry_point(), *(a.format(ws=ws) for a in argv)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 2, out
    assert len(out.stderr.splitlines()) == 1 and message in out.stderr, out.stderr
