"""The run folder has one owner, `RunLayout` (issue 9, item 12), and `pepx evaluate` says when a run is
incomplete and which weights it scored (item 4)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from pepx.cli import main
from pepx.errors import RunError, RunInterrupted
from pepx.training import RunLayout, TrainConfig, fit

SRC = Path(__file__).resolve().parents[2] / "src" / "pepx"
TINY = ["data=synthetic:n_per_class=24,size=64", "n_train=12", "n_test=5", "image_size=32",
        "model_kwargs.width=0.25", "batch_size=12", "epochs=2", "accelerator=cpu", "progress=false",
        "num_threads=1", "eval_splits=[test]"]


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- RunLayout on its own
def test_layout_names_every_file_and_tells_the_state(tmp_path):
    layout = RunLayout(tmp_path / "run")
    assert [p.relative_to(layout.root).as_posix() for p in (
        layout.config, layout.split, layout.metrics, layout.checkpoint, layout.final_weights,
        layout.predictions, layout.eval_dir, layout.epoch_weights(7))] == [
        "config.yaml", "split.csv", "metrics.csv", "checkpoints/last.ckpt", "model.safetensors",
        "predictions.csv", "eval", "weights/epoch_007.safetensors"]
    state = layout.state()
    assert (state.status, state.describe()) == ("empty", "empty: no epoch finished")
    with pytest.raises(RunError, match=r"config.yaml: not found .*no such folder"):
        layout.require()

    _touch(layout.config, "epochs: 3\n")
    for epoch in (1, 2):
        _touch(layout.epoch_weights(epoch))
    _touch(layout.weights_dir / ".epoch_003.safetensors.123.tmp")  # a write a kill interrupted
    _touch(layout.checkpoint)
    state = layout.state()
    assert layout.saved_epochs() == [1, 2] and layout.holds_run()
    assert (state.status, state.epochs_done, state.epochs_planned) == ("incomplete", 2, 3)
    assert state.describe() == "incomplete: stopped after epoch 2 of 3"
    path, note = layout.resolve_weights()
    assert path == layout.epoch_weights(2)
    assert "Run incomplete (incomplete: stopped after epoch 2 of 3)" in note
    with pytest.raises(RunError, match=r"no weights for epoch 5 \(saved epochs: 1-2\)"):
        layout.resolve_weights(5)

    _touch(layout.epoch_weights(3))
    _touch(layout.final_weights)
    assert layout.state().describe() == "complete: 3 of 3 epochs"
    assert layout.resolve_weights() == (layout.final_weights, None)
    path, note = layout.resolve_weights(3)
    assert path == layout.epoch_weights(3) and "epoch 3 (the final epoch)" in note


def test_layout_imports_without_lightning():
    code = ("import sys; from pepx.training import RunLayout; RunLayout('x').state(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_folder_names_are_spelt_only_in_layout():
    """No other module of training, experiments or the CLI spells a run-folder file name."""
    names = re.compile(r"""["'](config\.yaml|metrics\.csv|model\.safetensors|predictions\.csv|last\.ckpt|"""
                       r"""checkpoints|weights|epoch_\{)""")
    offenders = []
    for path in [*(SRC / "training").glob("*.py"), *(SRC / "experiments").glob("*.py"), SRC / "cli.py"]:
        if path.name == "layout.py":
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if names.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(SRC)}:{no}: {line.strip()}")
    assert offenders == []


# --------------------------------------------------------------------------- evaluate an incomplete run
class _SigtermAt(L.Callback):
    """Sends this process SIGTERM at the first batch of ``epoch`` (1-based): a real mid-epoch stop."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "stopped"
    with pytest.raises(RunInterrupted, match="interrupted by SIGTERM in epoch 2 of 2") as err:
        fit(TrainConfig().with_overrides(TINY), out, callbacks=[_SigtermAt(2)])
    assert err.value.exit_status == 143
    return out


def test_evaluate_on_an_incomplete_run_says_so_and_names_the_weights(stopped_run, capsys):
    assert RunLayout(stopped_run).state().describe() == "incomplete: stopped after epoch 1 of 2"
    assert main(["evaluate", str(stopped_run), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: Run incomplete (incomplete: stopped after epoch 1 of 2): scored " \
           "weights/epoch_001.safetensors, not final weights" in out
    report = (stopped_run / "eval" / "report.md").read_text()
    assert "**Warning:** Run incomplete" in report and "weights `weights/epoch_001.safetensors`" in report
    notes = json.loads((stopped_run / "eval" / "metrics.json").read_text())["notes"]
    assert any("scored weights/epoch_001.safetensors" in n for n in notes)

    fit(TrainConfig.from_file(stopped_run / "config.yaml"), stopped_run, resume=True)
    assert main(["evaluate", str(stopped_run), "--n-boot", "50", "--out", str(stopped_run / "final")]) == 0
    assert "WARNING" not in capsys.readouterr().out
    assert "weights `model.safetensors`" in (stopped_run / "final" / "report.md").read_text()
    assert main(["evaluate", str(stopped_run), "--n-boot", "50", "--weights", "1", "--out",
                 str(stopped_run / "epoch1")]) == 0
    out = capsys.readouterr().out
    assert "Scored weights/epoch_001.safetensors: epoch 1; run complete: 2 of 2 epochs" in out
