"""`check_config`: what can go wrong with a `TrainConfig` once training has started, checked before any file
of the run is written.

`TrainConfig` checks each field on its own; this builds what the fields name: the model (`create_model` checks
its arguments against the factory's signature; then one forward pass at ``image_size``), the loss
(`create_loss` checks its arguments against its class), the hardware (``accelerator=gpu`` needs a visible
GPU) and the image cache (a folder that can be written: created if missing, a temporary file made and
removed). Every failure is a `pepx.errors.ConfigError` naming the setting.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from pepx import CLASSES
from pepx.data.cache import cache_root
from pepx.errors import ConfigError
from pepx.losses import LOSSES, create_loss
from pepx.models import create_model, list_models
from pepx.training.config import TrainConfig


def check_config(config: TrainConfig) -> None:
    """Raise `ConfigError` for a model, loss or hardware setting that would fail during training."""
    _check_model(config)
    _check_loss(config)
    _check_hardware(config)
    _check_cache(config)


def _check_cache(config: TrainConfig) -> None:
    folder = Path(config.cache_dir) if config.cache_dir else cache_root() / "images"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        what = f"cache_dir={config.cache_dir}" if config.cache_dir else f"image cache {folder} ($PEPX_CACHE)"
        raise ConfigError(f"{what}: cannot write the decoded-image cache there ({err.strerror or err}); "
                          "choose a writable folder") from None


def _check_model(config: TrainConfig) -> None:
    if config.model not in list_models():
        raise ConfigError(f"model={config.model!r}: choose one of {', '.join(list_models())}")
    try:
        model = create_model(config.model, num_classes=len(CLASSES), in_chans=config.in_chans,
                             **config.model_kwargs)
    except ConfigError:  # an unknown argument or a value of the wrong type, named by `create_model`
        raise
    except (TypeError, ValueError) as err:  # the constructor's own checks (e.g. depths, variant)
        raise ConfigError(f"model={config.model} model_kwargs={config.model_kwargs}: {err}") from None
    size = config.image_size
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, config.in_chans, size, size))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"image_size={size}: model {config.model} cannot take {size}x{size} images "
                          f"({reason})") from None


def _check_loss(config: TrainConfig) -> None:
    if config.loss not in LOSSES:
        raise ConfigError(f"loss={config.loss!r}: choose one of {', '.join(LOSSES)}")
    try:
        create_loss(config.loss, **config.loss_kwargs)
    except ConfigError:  # an unknown argument or a value of the wrong type, named by `create_loss`
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"loss={config.loss} loss_kwargs={config.loss_kwargs}: {err}") from None


def _check_hardware(config: TrainConfig) -> None:
    acc = config.accelerator
    if acc in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"accelerator={acc}: no CUDA GPU is visible to torch "
                              "(torch.cuda.is_available() is False); use accelerator=cpu or auto")
        if isinstance(config.devices, int) and config.devices > torch.cuda.device_count():
            raise ConfigError(f"devices={config.devices}: only {torch.cuda.device_count()} GPU(s) visible")
    if acc == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("accelerator=mps: Apple's MPS backend is not available here; use accelerator=cpu")


__all__ = ["check_config"]
