"""Training engine: config loading, an end-to-end tiny run, repeatability, kill + resume, SIGTERM/SIGINT,
2-process DDP."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from pepx import CLASSES
from pepx.errors import RunError
from pepx.training import TrainConfig, fit, load_run, predict
from pepx.training.callbacks import TIMING_COLUMNS

N_TEST = 5  # per class: odd, so two DDP processes get uneven shards
TINY = [
    "data=synthetic:n_per_class=24,size=64", "n_train=12", f"n_test={N_TEST}", "n_val=3", "image_size=32",
    "model_kwargs.width=0.25", "batch_size=8", "epochs=3", "augment=true", "balanced_sampling=true",
    "accelerator=cpu", "progress=false",
    # Pinned: float reductions depend on the thread count, and an earlier test or the host may change it.
    "num_threads=1",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pepx_cache")
    old = os.environ.get("PEPX_CACHE")
    os.environ["PEPX_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("PEPX_CACHE", None)
    else:
        os.environ["PEPX_CACHE"] = old


def _config(*extra: str) -> TrainConfig:
    return TrainConfig().with_overrides([*TINY, *extra])


def _numeric(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=list(TIMING_COLUMNS))


@pytest.fixture(scope="module")
def run(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit(_config(), tmp_path_factory.mktemp("runs") / "ref")


def _pepx(args: list[str], env_cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PEPX_CACHE": str(env_cache)}
    return subprocess.Popen([sys.executable, "-m", "pepx.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# ---------------------------------------------------------------------- config
def test_config_yaml_toml_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("model: resnet18\nlr: 1e-3\nmodel_kwargs: {width: 0.5}\n"
                                     "eval_splits: [test]\n")
    (tmp_path / "c.toml").write_text('model = "resnet18"\nlr = 0.001\neval_splits = ["test"]\n'
                                     "[model_kwargs]\nwidth = 0.5\n")
    a, b = TrainConfig.from_file(tmp_path / "c.yaml"), TrainConfig.from_file(tmp_path / "c.toml")
    assert a == b and a.model == "resnet18" and a.lr == 0.001 and a.model_kwargs == {"width": 0.5}
    c = a.with_overrides(["epochs=3", "model_kwargs.width=0.25", "precision=32", "lr=2e-4", "split=null"])
    assert (c.epochs, c.model_kwargs, c.precision, c.lr, c.split) == (3, {"width": 0.25}, "32", 2e-4, None)
    c.save(tmp_path / "saved.yaml")
    assert TrainConfig.from_file(tmp_path / "saved.yaml") == c


@pytest.mark.parametrize("override, message", [
    ("lrr=0.1", "did you mean 'lr'"), ("epochs=two", "epochs"), ("optimizer=rmsprop", "optimizer"),
    ("novalue", "key=value"),
    # one line naming the key, the value and what it may be (pydantic's errors, translated)
    ("epochs=true", "^epochs=True: expected a number, not true/false$"),
    ("eval_batch_size=0", r"^eval_batch_size must be >= 1 \(or null\), got 0$"),
    ("momentum=1", "^momentum must be < 1, got 1$"), ("image_size=99999", "^image_size must be <= 2048"),
    ("optimizer=rmsprop", "^optimizer='rmsprop': choose one of adam, adamw, sgd$"),
    ("augment=1", "^augment=1: expected true/false$"),
    ("model=[a]", r"^model=\['a'\]: expected a single value$"),
    ("data=null", "^data: may not be empty$"), ("model_kwargs=3", "^model_kwargs=3: expected a mapping$"),
])
def test_bad_override_is_a_clear_error(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig().with_overrides([override])


def test_cli_bad_key_exits_with_message(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pepx.cli", "train", "--out", str(tmp_path / "r"), "bogus=1"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "unknown config key 'bogus'" in out.stderr


# ---------------------------------------------------------------------- end to end
def test_tiny_run_end_to_end(run: Path) -> None:
    for name in ("config.yaml", "split.csv", "metrics.csv", "checkpoints/last.ckpt", "model.safetensors",
                 "predictions.csv", "weights/epoch_001.safetensors", "weights/epoch_003.safetensors"):
        assert (run / name).exists(), name
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3]
    head = ["epoch", "train_loss", "train_acc", "lr", "epoch_seconds", "images_per_second"]
    assert list(metrics.columns[:6]) == head
    per_class = [f"{m}_{c}" for m in ("precision", "recall", "f1") for c in CLASSES]
    for split in ("val", "test"):
        for col in ("loss", "acc", "macro_f1", *per_class):
            assert f"{split}_{col}" in metrics.columns
    assert {"layer1.0.A", "layer1.0.B", "layer1.0.C"} <= set(metrics.columns)
    assert metrics.drop(columns=["lr"]).notna().all().all()

    preds = pd.read_csv(run / "predictions.csv")
    assert len(preds) == 3 * N_TEST and set(preds["split"]) == {"test"}
    split = pd.read_csv(run / "split.csv").set_index("path")  # view and age group travel with every image
    for col in ("view", "age_group"):
        assert preds[col].tolist() == split.loc[preds["path"], col].tolist() and preds[col].notna().all()
    probs = preds[[f"prob_{c}" for c in CLASSES]].sum(axis=1)
    assert (probs - 1).abs().max() < 1e-5
    accuracy = (preds["y_true"] == preds["y_pred"]).mean()
    assert accuracy == pytest.approx(metrics["test_acc"].iloc[-1], abs=1e-6)

    model, config = load_run(run)
    again = predict(model, preds.drop(columns=["y_true", "y_pred"]), config)
    pd.testing.assert_frame_equal(again, preds, check_dtype=False, atol=1e-5)


def test_existing_run_folder_is_not_overwritten(run: Path) -> None:
    with pytest.raises(RunError, match="already holds a run"):
        fit(_config(), run)


def test_same_seed_same_metrics_any_workers(run: Path, tmp_path: Path) -> None:
    """Same seed, now with 2 persistent DataLoader workers: identical per-epoch metrics."""
    again = fit(_config("num_workers=2"), tmp_path / "again")
    pd.testing.assert_frame_equal(_numeric(again), _numeric(run), check_exact=True)


# ---------------------------------------------------------------------- resume
def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll until ``path`` exists (True) or the process ends / the time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.01)
    return path.exists()


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_sigkill_then_resume_trains_only_the_remaining_epochs(run: Path, cache: Path, tmp_path: Path) -> None:
    """Killed once epoch 1's checkpoint exists, `--resume` trains epochs k+1..3 only (k = the checkpoint's
    epoch): the resumed process logs only those, the earlier weights files stay byte-identical and untouched,
    and metrics and predictions equal an uninterrupted run's."""
    out = tmp_path / "killed"
    proc = _pepx(["--out", str(out), *TINY], cache)
    assert _wait_for(out / "checkpoints" / "last.ckpt", proc), "no checkpoint before training ended"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
    assert not (out / "model.safetensors").exists()
    done = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] + 1
    assert 1 <= done < 3, f"checkpoint after epoch {done}: killed too late to test a resume"
    kept = {e: _fingerprint(out / "weights" / f"epoch_{e:03d}.safetensors") for e in range(1, done + 1)}
    # As if killed between writing a row and its checkpoint: resume must drop rows past the checkpoint.
    lines = (out / "metrics.csv").read_text().splitlines()
    last = lines[-1].split(",")
    with (out / "metrics.csv").open("a") as f:
        f.write(",".join([str(int(last[0]) + 1), *["-1"] * (len(last) - 1)]) + "\n")

    resumed = _pepx(["--resume", str(out)], cache)
    log, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, log
    trained = [int(m) for m in re.findall(r"^epoch (\d+)/3 ", log, flags=re.MULTILINE)]
    assert trained == list(range(done + 1, 4)), log
    assert f"after epoch {done} of 3" in log
    assert {e: _fingerprint(out / "weights" / f"epoch_{e:03d}.safetensors") for e in kept} == kept
    pd.testing.assert_frame_equal(_numeric(out), _numeric(run), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(out / "predictions.csv"), pd.read_csv(run / "predictions.csv"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_epoch_exits_128_plus_signal_and_keeps_a_resumable_checkpoint(
        sig: signal.Signals, cache: Path, tmp_path: Path) -> None:
    """A job scheduler's SIGTERM (Ctrl-C's SIGINT) in epoch 2 of 2: exit 143 (130), one stderr line naming the
    run and the resume command, no epoch-2 or final weights, and the epoch-1 checkpoint resumes to a complete
    run. (The last epoch: a signal landing late has no later epoch to hide in.)"""
    out = tmp_path / sig.name
    env = {**os.environ, "PEPX_CACHE": str(cache)}
    # batch_size=2: 18 training batches an epoch, so the signal lands inside one
    argv = [sys.executable, "-m", "pepx.cli", "train", "--out", str(out), *TINY, "batch_size=2", "epochs=2",
            "n_val=0"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(out / "checkpoints" / "last.ckpt", proc), "no checkpoint before training ended"
    time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, (proc.returncode, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    stopped = re.search(rf"interrupted by {sig.name} in epoch 2 of 2: ", lines[0])
    assert stopped and f"pepx train --resume {out}" in lines[0], lines[0]
    assert re.findall(r"^epoch (\d+)/2 ", stdout, flags=re.MULTILINE) == ["1"], stdout
    assert not (out / "weights" / "epoch_002.safetensors").exists()
    assert not (out / "model.safetensors").exists()

    fit(TrainConfig.from_file(out / "config.yaml"), out, resume=True)
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [1, 2]
    assert (out / "model.safetensors").exists() and (out / "predictions.csv").exists()


# ---------------------------------------------------------------------- DDP
@pytest.mark.slow
def test_two_process_gloo_ddp_scores_each_test_image_once(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = _pepx(["--out", str(out), *TINY, "epochs=2", "devices=2", "strategy=ddp"], cache)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2]
    preds = pd.read_csv(out / "predictions.csv")
    n = 3 * N_TEST
    assert len(preds) == n
    # torchmetrics synced over both processes = single-process scoring of the final model, image for image:
    # padding (a duplicated image) would make n * acc and the per-class recalls disagree.
    last = metrics.iloc[-1]
    correct = int((preds["y_true"] == preds["y_pred"]).sum())
    assert last["test_acc"] * n == pytest.approx(correct, abs=1e-4)
    for i, cls in enumerate(CLASSES):
        hits = ((preds["y_true"] == i) & (preds["y_pred"] == i)).sum()
        assert last[f"test_recall_{cls}"] == pytest.approx(hits / N_TEST, abs=1e-6)
