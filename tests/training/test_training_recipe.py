"""Recipe settings of a training run: weight EMA (evaluation and the saved model use the average)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from pepx.training import TrainConfig, fit

TINY = ["data=synthetic:n_per_class=24,size=64", "n_train=12", "n_test=5", "image_size=32",
        "model_kwargs.width=0.25", "batch_size=8", "epochs=2", "accelerator=cpu", "progress=false",
        "num_threads=1", "eval_splits=[test]"]


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize("ema", [0.5])
def test_ema_is_what_is_evaluated_and_saved(ema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEPX_CACHE", str(tmp_path / "cache"))
    config = TrainConfig().with_overrides([*TINY, f"ema_decay={'null' if ema is None else ema}",
                                           "loss=focal", "loss_kwargs.label_smoothing=0.1"])
    run = fit(config, tmp_path / "run")
    final, raw = load_file(run / "model.safetensors"), load_file(run / "weights" / "epoch_002.safetensors")
    if ema is None:
        assert _max_diff(final, raw) == 0.0
    else:
        assert _max_diff(final, raw) > 1e-3  # the average, not the last step's weights
    preds = pd.read_csv(run / "predictions.csv")
    metrics = pd.read_csv(run / "metrics.csv")
    assert (preds["y_true"] == preds["y_pred"]).mean() == pytest.approx(metrics["test_acc"].iloc[-1])


def test_ema_decay_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
