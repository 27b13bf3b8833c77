"""`fit` one run into a folder, `load_run` it back, `predict` any manifest with it."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.fabric.utilities.rank_zero import _get_rank
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint, TQDMProgressBar
from safetensors.torch import load_model
from torch import nn
from torch.utils.data import DataLoader

from pepx import CLASSES
from pepx.training.callbacks import RunWriter
from pepx.training.config import TrainConfig
from pepx.training.datamodule import CXRDataModule, loader_kwargs, make_dataset
from pepx.training.module import TrainModule

CONFIG_FILE, SPLIT_FILE, PREDICTIONS_FILE = "config.yaml", "split.csv", "predictions.csv"
LAST_CKPT = Path("checkpoints") / "last.ckpt"
#: Set by rank 0 before DDP launches workers, which re-run the same command line and need the same folder.
RUN_DIR_ENV = "PEPX_RUN_DIR"
PREDICTION_COLUMNS = ["path", "label", "patient_id", "source", "age_group", "split", "y_true", "y_pred",
                      *[f"prob_{c}" for c in CLASSES]]


def default_run_dir(config: TrainConfig, root: str | Path = "runs") -> Path:
    """`runs/<model>-<loss>-seed<seed>-<time>`, or the folder rank 0 chose when this is a DDP worker."""
    if os.environ.get(RUN_DIR_ENV) and _rank() != 0:
        return Path(os.environ[RUN_DIR_ENV])
    return Path(root) / f"{config.model}-{config.loss}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _rank() -> int:
    """This process's global rank from the environment (0 outside DDP and in the launching process)."""
    node = int(os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or 0)
    rank = _get_rank() or 0
    return rank if node == 0 else max(rank, 1)


def build_model(config: TrainConfig) -> nn.Module:
    from pepx.models import create_model

    return create_model(config.model, num_classes=len(CLASSES), in_chans=config.in_chans,
                        **config.model_kwargs)


def _prepare_split(config: TrainConfig, run_dir: Path, resume: bool) -> pd.DataFrame:
    """The run's split: its `split.csv` when resuming (or in a DDP worker), else made and saved by rank 0."""
    from pepx.data import balanced_split, load_source, load_split, save_split

    path = run_dir / SPLIT_FILE
    if path.exists() and (resume or _rank() != 0):
        return load_split(path)
    if config.split:
        split = load_split(config.split)
    else:
        manifest = load_source(config.data).manifest
        split = balanced_split(manifest, config.n_train, config.n_test, n_val=config.n_val,
                               seed=config.split_seed)
    if _rank() == 0:
        save_split(split, path)
    return split


def _precision(config: TrainConfig, accelerator: str) -> str:
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not on_gpu:
        return "32"
    if config.precision == "auto":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return config.precision


def _trainer(config: TrainConfig, run_dir: Path, n_eval: int, callbacks: Sequence[L.Callback]) -> L.Trainer:
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # Lightning vs torch 2.13, harmless
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    progress = sys.stderr.isatty() if config.progress is None else config.progress
    if not progress:
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    ckpt = ModelCheckpoint(dirpath=run_dir / LAST_CKPT.parent, save_last=True, save_top_k=0,
                           save_on_train_epoch_end=True, enable_version_counter=False)
    # EMA first: at the end of training it copies the average into the model before RunWriter saves it
    ema = [EMAWeightAveraging(decay=config.ema_decay)] if config.ema_decay else []
    cbs: list[L.Callback] = [*ema, RunWriter(run_dir), ckpt, *callbacks]
    if progress:
        cbs.append(TQDMProgressBar(refresh_rate=1))
    return L.Trainer(
        accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
        strategy=config.strategy, precision=_precision(config, config.accelerator),  # type: ignore[arg-type]
        max_epochs=config.epochs, deterministic="warn" if config.deterministic else None,
        benchmark=not config.deterministic,  # cuDNN autotuning only when repeatability is not asked for
        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=1.0 if n_eval else 0,
        logger=False, default_root_dir=run_dir, enable_progress_bar=progress, enable_model_summary=False,
        callbacks=cbs, log_every_n_steps=1)


def fit(config: TrainConfig, out_dir: str | Path, resume: bool = False,
        callbacks: Sequence[L.Callback] = ()) -> Path:
    """Train `config` into `out_dir` (see docs/training.md for the folder); `resume=True` continues it from
    `checkpoints/last.ckpt`. Returns the run folder. Extra Lightning `callbacks` are passed to the Trainer.

    With `strategy=ddp` Lightning re-runs the command line once per extra process: call `fit` from a script
    (e.g. `pepx train`), or use `strategy=ddp_spawn` from Python.
    """
    run_dir = Path(out_dir).resolve()
    if _rank() == 0:
        if not resume and ((run_dir / "metrics.csv").exists() or (run_dir / LAST_CKPT).exists()):
            raise FileExistsError(f"{run_dir} already holds a run: resume it or use another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / CONFIG_FILE)
    saved_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    split = _prepare_split(config, run_dir, resume)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = CXRDataModule(config, split)
    from pepx.losses import create_loss

    module = TrainModule(build_model(config), create_loss(config.loss, **config.loss_kwargs), config,
                         data.eval_names)
    trainer = _trainer(config, run_dir, len(data.eval_names), callbacks)
    ckpt = run_dir / LAST_CKPT
    saved_env, saved_det = os.environ.get(RUN_DIR_ENV), torch.are_deterministic_algorithms_enabled()
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt if resume and ckpt.exists() else None)
    finally:  # leave the calling process as it was
        torch.use_deterministic_algorithms(saved_det)
        if saved_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = saved_env
    if _rank() == 0 and "test" in set(split["split"]):
        model = build_model(config)
        load_model(model, str(run_dir / "model.safetensors"))
        device = trainer.strategy.root_device if trainer.strategy.root_device.type != "cpu" else None
        predictions = predict(model, split[split["split"] == "test"], config, device=device)
        predictions.to_csv(run_dir / PREDICTIONS_FILE, index=False)
    torch.set_num_threads(saved_threads)
    return run_dir


def load_run(run_dir: str | Path) -> tuple[nn.Module, TrainConfig]:
    """The trained model (from `model.safetensors`, else the newest `weights/epoch_*`) and its config."""
    run_dir = Path(run_dir)
    config = TrainConfig.from_file(run_dir / CONFIG_FILE)
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        epochs = sorted((run_dir / "weights").glob("epoch_*.safetensors"))
        if not epochs:
            raise FileNotFoundError(f"{run_dir}: no model.safetensors and no weights/epoch_*.safetensors")
        weights = epochs[-1]
    model = build_model(config)
    load_model(model, str(weights))
    return model.eval(), config


@torch.no_grad()
def predict(model: nn.Module, frame: pd.DataFrame, config: TrainConfig, batch_size: int = 64,
            device: str | torch.device | None = None, num_workers: int = 0) -> pd.DataFrame:
    """One `predictions.csv` row per row of `frame` (a manifest, with or without `split`): class
    probabilities, `y_pred` (argmax) and `y_true` (label index; -1 for a label not in `CLASSES`)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    frame = frame.reset_index(drop=True)
    was_training = model.training
    model = model.to(device).eval()
    loader = DataLoader(make_dataset(frame, config), batch_size=batch_size, shuffle=False,
                        **loader_kwargs(num_workers))
    probs = []
    for x, _ in loader:
        x = x.to(device)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        probs.append(torch.softmax(model(x).float(), dim=1).cpu())
    model.train(was_training)
    p = torch.cat(probs).numpy() if probs else torch.empty(0, len(CLASSES)).numpy()
    out = pd.DataFrame({c: frame[c] if c in frame else pd.NA
                        for c in ("path", "label", "patient_id", "source", "age_group", "split")})
    labels = frame["label"] if "label" in frame else [None] * len(frame)
    out["y_true"] = [CLASSES.index(v) if v in CLASSES else -1 for v in labels]
    out["y_pred"] = p.argmax(axis=1) if len(p) else []
    for i, cls in enumerate(CLASSES):
        out[f"prob_{cls}"] = p[:, i]
    return out[PREDICTION_COLUMNS]

