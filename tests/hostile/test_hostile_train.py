"""Hostile probe, part 2 (issue 17): `pepx train` - settings out of range, run folders that are not runs or
are busy, damaged or edited run files, a non-finite loss and a full disk. Checked by `hostile_kit.run_case`
(no hang, no traceback, nothing outside the command's new output touched, one line, exit 2)."""

from __future__ import annotations

import errno
import os
import shutil
import zipfile

import pytest
import torch
import yaml
from filelock import FileLock
from hostile_kit import Case, fail, release_fifo, run_case

import pepx.training.callbacks
import pepx.training.run
from pepx.training import RunLayout, TrainConfig, fit

SMALL = ["model_kwargs.width=0.25", "image_size=32", "accelerator=cpu", "progress=false", "num_threads=1"]
DATA = "data=synthetic:n_per_class=24,size=64"
NEW = ["train", "--out", "{ws}/out/{id}", *SMALL, DATA, "n_train=8", "n_test=0", "epochs=1", "batch_size=12"]
#: Cases that, unrefused, would exhaust the machine (spawn 100,000 workers, allocate tens of GB, generate
#: billions of images, train forever): run them only where the refusal is expected to be in place.
DANGEROUS = {"num-workers-huge", "image-size-huge", "epochs-huge", "synthetic-n-huge", "synthetic-size-huge",
             "width-huge", "num-threads-huge"}
LOCK = ".lock"  # RunLayout(RUN).lock


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hostile_train")
    run = root / "run"
    fit(TrainConfig().with_overrides([DATA, "n_train=8", "n_test=0", "epochs=1", "batch_size=12", *SMALL]),
        run)
    (root / "notes").mkdir()
    (root / "notes" / "keep.txt").write_text("a user's notes\n")
    (root / "existing.txt").write_text("keep me\n")
    other = root / "other_split"  # a run folder whose training never finished an epoch, on another split
    other.mkdir()
    shutil.copy(run / "config.yaml", other / "config.yaml")
    shutil.copy(run / "split.csv", other / "split.csv")
    unfinished = root / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "model.safetensors").unlink()
    cfg = yaml.safe_load((unfinished / "config.yaml").read_text())
    (unfinished / "config.yaml").write_text(yaml.safe_dump({**cfg, "epochs": 2}))
    junk = root / "junk_ckpt"
    shutil.copytree(unfinished, junk)
    with zipfile.ZipFile(junk / "checkpoints" / "last.ckpt", "w") as z:
        z.writestr("archive/data.pkl", b"not a pickle at all")
    edited = root / "edited_model"
    shutil.copytree(unfinished, edited)
    (edited / "config.yaml").write_text(yaml.safe_dump({**cfg, "epochs": 2, "model": "resnet18"}))
    shutil.copytree(unfinished, root / "locked")
    (root / "fifos").mkdir()
    os.mkfifo(root / "fifos" / "config.yaml")
    yield root
    release_fifo(root / "fifos" / "config.yaml")


CASES = [
    # -------------------------------------------------------------- settings: ranges, checked before writing
    Case("lr-inf", [*NEW, "lr=inf"], message="lr"),
    Case("lr-huge", [*NEW, "lr=1e30"], message="lr"),
    Case("momentum-above-1", [*NEW, "optimizer=sgd", "momentum=5"], message="momentum"),
    Case("weight-decay-inf", [*NEW, "weight_decay=inf"], message="weight_decay"),
    Case("lr-gamma-inf", [*NEW, "scheduler=step", "lr_gamma=inf"], message="lr_gamma"),
    Case("num-workers-huge", [*NEW, "num_workers=100000"], message="num_workers"),
    Case("image-size-huge", [*NEW, "image_size=100000"], message="image_size"),
    Case("batch-size-huge", [*NEW, "batch_size=1000000000"], message="batch_size"),
    Case("eval-batch-size-huge", [*NEW, "eval_batch_size=1000000000"], message="eval_batch_size"),
    Case("epochs-huge", [*NEW, "epochs=1000000000"], message="epochs"),
    Case("num-threads-huge", [*NEW, "num_threads=100000"], message="num_threads"),
    Case("seed-beyond-numpy", [*NEW, "seed=1180591620717411303424"], message="seed"),
    Case("synthetic-n-huge", [*NEW, "data=synthetic:n_per_class=1000000000"], message="n_per_class"),
    Case("synthetic-size-huge", [*NEW, "data=synthetic:size=100000"], message="size"),
    Case("width-huge", [*NEW, "model_kwargs.width=1000.0"], message="width"),
    Case("width-nan", [*NEW, "model_kwargs.width=.nan"], message="width"),
    Case("cache-under-a-file", [*NEW, "cache_dir={ws}/existing.txt/cache"], message="cache"),
    Case("cache-in-proc", [*NEW, "cache_dir=/proc/pepx-cache"], message="cache"),
    Case("config-is-a-fifo", ["train", "--config", "{ws}/fifos/config.yaml"], message="not a regular file",
         timeout=30),
    # -------------------------------------------------------------- run folders
    Case("out-holds-user-files", ["train", "--out", "{ws}/notes", *SMALL, DATA, "n_train=8", "n_test=0"],
         message="is not a run"),
    Case("out-split-disagrees", ["train", "--out", "{ws}/other_split", *SMALL, DATA, "n_train=6", "n_test=0",
                                 "epochs=1", "batch_size=12"], message="split.csv"),
    Case("resume-junk-checkpoint", ["train", "--resume", "{ws}/junk_ckpt"], message="last.ckpt"),
    Case("resume-config-edited-to-another-model", ["train", "--resume", "{ws}/edited_model"],
         message="resnet18"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_case(ws, capsys, monkeypatch, case):
    if case.id in DANGEROUS and os.environ.get("PEPX_PROBE_SAFE"):
        pytest.skip("would exhaust the machine unrefused (PEPX_PROBE_SAFE)")
    monkeypatch.delenv("PEPX_DEBUG", raising=False)
    run_case(case, ws, capsys)


@pytest.mark.parametrize("argv", [["train", "--out", "{ws}/locked", *SMALL],
                                  ["train", "--resume", "{ws}/locked"]], ids=["out", "resume"])
def test_a_run_being_trained_is_refused(ws, capsys, argv):
    """A second `pepx train` into a folder another one is training into is refused (lock file)."""
    with FileLock(str(ws / "locked" / LOCK), timeout=0):
        status, _, _ = run_case(Case("locked", argv, message="another `pepx train`"), ws, capsys)


def test_an_unwritable_cache_for_the_synthetic_set_is_one_line(ws, capsys, monkeypatch):
    monkeypatch.setenv("PEPX_CACHE", str(ws / "existing.txt" / "cache"))
    run_case(Case("synthetic-cache-unwritable", ["data", "inspect", "synthetic:n_per_class=2,size=32"],
                  message="cache"), ws, capsys)


class _NaNAfter(torch.nn.Module):
    """Cross-entropy that turns NaN from its `n`-th call on (as a diverging run does)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(logits, target)
        return loss * float("nan") if self.calls >= self.n else loss


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_epoch(ws, capsys, monkeypatch):
    # 8 images a class, batch 12: 2 steps an epoch; the loss turns NaN in epoch 2
    monkeypatch.setattr(pepx.training.run, "create_loss", lambda *a, **k: _NaNAfter(3))
    out = ws / "out" / "nan"
    run_case(Case("loss-turns-nan", ["train", "--out", str(out), *SMALL, DATA, "n_train=8", "n_test=0",
                                     "epochs=3", "batch_size=12"],
                  message="non-finite", outputs=["out"]), ws, capsys)
    layout = RunLayout(out)
    state = layout.state()
    if state.complete or layout.saved_epochs() != [1] or not layout.checkpoint.is_file():
        fail("wrong", f"after the NaN: {state.describe()}, epochs {layout.saved_epochs()}")
    weights = torch.load(layout.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    if not all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()):
        fail("data loss", "the kept checkpoint holds non-finite weights")


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(ws, capsys, monkeypatch):
    calls = {"n": 0}
    real = pepx.training.callbacks.save_model

    def save_then_fill(model, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:  # epoch 2's weights: the disk is full
            with open(path, "wb") as fh:
                fh.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(model, path, *args, **kwargs)

    monkeypatch.setattr(pepx.training.callbacks, "save_model", save_then_fill)
    out = ws / "out" / "full"
    run_case(Case("disk-full", ["train", "--out", str(out), *SMALL, DATA, "n_train=8", "n_test=0", "epochs=3",
                                "batch_size=12"], message="No space left on device", outputs=["out"]),
             ws, capsys)
    layout = RunLayout(out)
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name]
    if layout.saved_epochs() != [1] or not layout.checkpoint.is_file() or leftovers:
        fail("wrong", f"epochs {layout.saved_epochs()}, checkpoint {layout.checkpoint.is_file()}, "
                      f"temporary files left: {leftovers}")
    ckpt = torch.load(layout.checkpoint, map_location="cpu", weights_only=False)
    if ckpt["epoch"] != 0:
        fail("data loss", f"the checkpoint is epoch {ckpt['epoch'] + 1}'s, not the last good one's")
