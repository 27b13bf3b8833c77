"""`fit` one run into a folder, `load_run` it back, `predict` any manifest with it."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from filelock import FileLock, Timeout
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn
from torch.utils.data import DataLoader

from pepx import CLASSES
from pepx.data import DataError, balanced_split, load_source, load_split, save_split
from pepx.errors import ConfigError, OutputError, RunError
from pepx.fileio import atomic_path
from pepx.losses import create_loss
from pepx.models import create_model
from pepx.training.callbacks import EpochCheckpoint, RunWriter
from pepx.training.config import TrainConfig
from pepx.training.datamodule import CXRDataModule, domain_codes, loader_kwargs, make_dataset, needs_domains
from pepx.training.layout import RunLayout
from pepx.training.module import NonFiniteLoss, TrainModule
from pepx.training.preflight import check_config
from pepx.training.progress import EpochBar, quiet_lightning
from pepx.training.signals import GracefulStop

#: Set by rank 0 before DDP launches workers, which re-run the same command line and need the same folder.
RUN_DIR_ENV = "PEPX_RUN_DIR"
PREDICTION_COLUMNS = ["path", "label", "patient_id", "source", "age_group", "view", "split", "y_true",
                      "y_pred", *[f"prob_{c}" for c in CLASSES]]


def default_run_dir(config: TrainConfig, root: str | Path = "runs") -> Path:
    """`runs/<model>-<loss>-seed<seed>-<time>`, or the folder rank 0 chose when this is a DDP worker."""
    if os.environ.get(RUN_DIR_ENV) and _rank() != 0:
        return Path(os.environ[RUN_DIR_ENV])
    return Path(root) / f"{config.model}-{config.loss}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _rank() -> int:
    """This process's global rank (0 outside DDP and in the launching process): Lightning's, which it reads
    from the environment at import and sets again once DDP starts."""
    node = int(os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or 0)
    rank = rank_zero_only.rank
    return rank if node == 0 else max(rank, 1)


def build_model(config: TrainConfig) -> nn.Module:
    return create_model(config.model, num_classes=len(CLASSES), in_chans=config.in_chans,
                        **config.model_kwargs)


def _draw_split(config: TrainConfig, layout: RunLayout, resume: bool) -> pd.DataFrame:
    """The run's split, in memory: its `split.csv` when resuming (or in a DDP worker), else `config.split`,
    else drawn with `balanced_split`. Raises `DataError` for unusable data, before anything is written."""
    if layout.split.exists() and (resume or _rank() != 0):
        return load_split(layout.split)
    if config.split:
        split = load_split(config.split)
    else:
        split = balanced_split(load_source(config.data).manifest, config.n_train, config.n_test,
                               n_val=config.n_val, seed=config.split_seed)
    train = split[split["split"] == "train"]
    if train.empty:
        raise DataError(f"{config.split or config.data}: the split has no train rows")
    if needs_domains(config):
        _, domains = domain_codes(train, config.domain_column)
        if config.domain_adversary != "none" and len(domains) < 2:
            raise ConfigError(f"domain_adversary={config.domain_adversary}: the training rows come from one "
                              f"{config.domain_column} ({domains[0]}); there is no source to unlearn")
    return split


def _check_resumable(layout: RunLayout, config: TrainConfig) -> None:
    """Raise `RunError` unless ``layout`` is a run with something left to train and a checkpoint holding
    the weights of ``config``'s network (a damaged file or an edited config.yaml: one line, no traceback)."""
    layout.require()
    state = layout.state()
    if state.complete:
        raise RunError(f"{layout.root} is {state.describe()}: nothing to resume")
    if not layout.checkpoint.exists():
        return
    damaged = (f"{layout.checkpoint}: damaged checkpoint ({{}}); the finished epochs' weights are in "
               f"{layout.weights_dir}; train again with another --out")
    try:
        with zipfile.ZipFile(layout.checkpoint) as z:
            bad = z.testzip()
        # the run's own file, as Lightning will load it; a valid zip of junk fails here, not mid-training
        state_dict = torch.load(layout.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    except Exception as err:  # noqa: BLE001 - torch.load raises many types for damaged files
        raise RunError(damaged.format(f"{type(err).__name__}: {str(err).strip().splitlines()[0][:120]}"
                                      if str(err).strip() else type(err).__name__)) from None
    if bad:
        raise RunError(damaged.format(bad))
    expected = build_model(config).state_dict()
    saved = {k.removeprefix("model."): v for k, v in state_dict.items() if k.startswith("model.")}
    wrong = sorted(set(expected) ^ set(saved)) or [k for k in expected if expected[k].shape != saved[k].shape]
    if wrong:
        raise RunError(f"{layout.checkpoint} holds another network than {layout.config} describes "
                       f"(model={config.model}, model_kwargs={config.model_kwargs}; e.g. {wrong[0]!r} "
                       "differs): was config.yaml edited? Restore it, or train again with another --out")


def _check_out_folder(layout: RunLayout, locked: bool = False) -> None:
    """Refuse an ``--out`` that another `pepx train` is writing (unless this process holds its lock), that
    holds a run, or that holds files but is not a run folder (no config.yaml): training there would mix its
    files with someone else's."""
    if not locked:
        _check_unlocked(layout)
    if layout.holds_run():
        raise RunError(f"{layout.root} already holds a run ({layout.state().describe()}): continue it with "
                       f"`pepx train --resume {layout.root}`, or choose another --out")
    if layout.root.exists() and not layout.root.is_dir():
        raise RunError(f"{layout.root}: cannot write the run folder (it is a file)")
    others = sorted(p.name for p in layout.root.iterdir() if p.name != layout.lock.name) \
        if layout.root.is_dir() else []
    if others and not layout.config.is_file():
        raise RunError(f"{layout.root} holds files but is not a run folder (e.g. {others[0]}): "
                       "choose a new or empty folder for --out")


def _check_unlocked(layout: RunLayout) -> None:
    """Raise `RunError` while another process holds the run's lock file (checked without creating it)."""
    if layout.lock.exists():
        _lock(layout).release()


def _lock(layout: RunLayout) -> FileLock:
    """Take the run folder's lock (the folder must exist), or raise `RunError` naming the folder."""
    lock = FileLock(str(layout.lock), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(f"{layout.root}: another `pepx train` is training into this folder (it holds "
                       f"{layout.lock.name}); wait for it to end, or choose another --out") from None
    return lock


def _check_same_split(layout: RunLayout, split: pd.DataFrame) -> None:
    """A run folder's own split.csv (left by a run that never finished an epoch) must be the split this
    config draws, or the run would train on images its config does not name."""
    if not layout.split.is_file():
        return
    cols = ["path", "label", "split"]
    saved = load_split(layout.split)[cols].sort_values(cols).reset_index(drop=True)
    if not saved.astype(str).equals(split[cols].sort_values(cols).reset_index(drop=True).astype(str)):
        raise RunError(f"{layout.split} holds another split than this config draws (other images or "
                       f"splits): choose another --out, or delete {layout.root} to start it again")


def _precision(config: TrainConfig, accelerator: str) -> str:
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not on_gpu:
        return "32"
    if config.precision == "auto":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return config.precision


def _trainer(config: TrainConfig, layout: RunLayout, n_eval: int,
             callbacks: Sequence[L.Callback]) -> L.Trainer:
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # Lightning vs torch 2.13, harmless
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    progress = sys.stderr.isatty() if config.progress is None else config.progress
    # EMA first: at the end of training it copies the average into the model, which `fit` then saves
    ema = [EMAWeightAveraging(decay=config.ema_decay)] if config.ema_decay else []
    cbs: list[L.Callback] = [*ema, RunWriter(layout), EpochCheckpoint(layout), *callbacks]
    if progress:
        cbs.append(EpochBar())
    return L.Trainer(
        accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
        strategy=config.strategy, precision=_precision(config, config.accelerator),  # type: ignore[arg-type]
        max_epochs=config.epochs, deterministic="warn" if config.deterministic else None,
        benchmark=not config.deterministic,  # cuDNN autotuning only when repeatability is not asked for
        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=1.0 if n_eval else 0,
        logger=False, default_root_dir=layout.root, enable_progress_bar=progress, enable_model_summary=False,
        callbacks=cbs, log_every_n_steps=1)


def fit(config: TrainConfig, out_dir: str | Path, resume: bool = False,
        callbacks: Sequence[L.Callback] = ()) -> Path:
    """Train `config` into `out_dir` (see `RunLayout` for the folder); `resume=True` continues it from
    `checkpoints/last.ckpt`, training only the epochs left. Returns the run folder. Extra Lightning
    `callbacks` are passed to the Trainer.

    Nothing is written before the config (`check_config`) and the data (the split) have been checked.
    SIGTERM / SIGINT stop training after the current batch with `pepx.errors.RunInterrupted`, keeping the
    last finished epoch's checkpoint. `model.safetensors` is written last: it marks a complete run.

    With `strategy=ddp` Lightning re-runs the command line once per extra process: call `fit` from a script
    (e.g. `pepx train`), or use `strategy=ddp_spawn` from Python.
    """
    layout = RunLayout(Path(out_dir).resolve())
    run_dir = layout.root
    check_config(config)
    if resume:
        _check_unlocked(layout)
        _check_resumable(layout, config)
    elif _rank() == 0:
        _check_out_folder(layout)
    split = _draw_split(config, layout, resume)
    lock = None
    if _rank() == 0:
        if not resume:
            _check_same_split(layout, split)
        lock = _start_folder(config, layout, split, resume)
    try:
        _train(config, layout, split, resume, callbacks)
    except OutputError as err:  # a full disk: the last finished epoch's files are whole
        raise OutputError(f"{err}. Training stopped; {run_dir} is {layout.state().describe()}: "
                          f"`pepx train --resume {run_dir}` continues it once there is room") from None
    except NonFiniteLoss as err:
        raise NonFiniteLoss(f"{run_dir}: training stopped: {err} (too high an lr?); the run is "
                            f"{layout.state().describe()}, with the last good epoch's weights and checkpoint "
                            "kept") from None
    finally:
        if lock is not None:
            lock.release()
    return run_dir


def _train(config: TrainConfig, layout: RunLayout, split: pd.DataFrame, resume: bool,
           callbacks: Sequence[L.Callback]) -> None:
    run_dir = layout.root
    saved_threads = torch.get_num_threads()
    saved_env, saved_det = os.environ.get(RUN_DIR_ENV), torch.are_deterministic_algorithms_enabled()
    try:
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        with GracefulStop(run_dir) as stop, quiet_lightning():
            L.seed_everything(config.seed, workers=True, verbose=False)
            data = CXRDataModule(config, split)
            module = TrainModule(build_model(config), create_loss(config.loss, **config.loss_kwargs), config,
                                 data.eval_names, num_domains=len(data.domain_names))
            trainer = _trainer(config, layout, len(data.eval_names), [*callbacks, stop])
            ckpt = layout.checkpoint if resume and layout.checkpoint.exists() else None
            os.environ[RUN_DIR_ENV] = str(run_dir)
            try:
                trainer.fit(module, datamodule=data, ckpt_path=ckpt)
            except SIGTERMException:  # Lightning's own stop (a bare SystemExit): make it an honest one
                raise stop.interrupted(signal.SIGTERM) from None
            stop.settle()
            if _rank() == 0:
                root = trainer.strategy.root_device
                _finish(module.model, config, layout, split, device=root if root.type != "cpu" else None)
    finally:  # leave the calling process as it was
        torch.use_deterministic_algorithms(saved_det)
        torch.set_num_threads(saved_threads)
        if saved_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = saved_env


def _start_folder(config: TrainConfig, layout: RunLayout, split: pd.DataFrame, resume: bool) -> FileLock:
    """Create the run folder, take its lock, write `config.yaml` and (when new) `split.csv`; the lock."""
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"{layout.root}: cannot write the run folder ({err.strerror or err})") from None
    lock = _lock(layout)
    try:
        if not resume:
            _check_out_folder(layout, locked=True)  # again, now that no other `pepx train` can start here
        with atomic_path(layout.config) as tmp:
            config.save(tmp)
        if not layout.split.exists():
            with atomic_path(layout.split) as tmp:
                save_split(split, tmp)
    except BaseException:
        lock.release()
        raise
    return lock


def _finish(model: nn.Module, config: TrainConfig, layout: RunLayout, split: pd.DataFrame,
            device: torch.device | None) -> None:
    """Test-split predictions, then `model.safetensors` (last: its presence marks the run complete)."""
    test = split[split["split"] == "test"]
    if len(test):
        predictions = predict(model, test, config, device=device)
        with atomic_path(layout.predictions) as tmp:
            predictions.to_csv(tmp, index=False)
    with atomic_path(layout.final_weights) as tmp:
        save_model(model, str(tmp))


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a safetensors file into ``model`` strictly; `RunError` names the file when it is damaged or holds
    another model's weights."""
    try:
        load_model(model, str(path))
    except (SafetensorError, OSError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"{path}: cannot load the weights ({reason})") from None
    return model


def load_run(run_dir: str | Path, epoch: int | None = None) -> tuple[nn.Module, TrainConfig]:
    """The trained model in eval mode and its config: `model.safetensors` of a complete run, else the newest
    `weights/epoch_NNN` (see `RunLayout.resolve_weights`); ``epoch`` picks one epoch's weights."""
    layout = RunLayout(run_dir).require()
    config = TrainConfig.from_file(layout.config)
    weights, _ = layout.resolve_weights(epoch)
    model = load_weights(build_model(config), weights)
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
                        for c in PREDICTION_COLUMNS[:PREDICTION_COLUMNS.index("y_true")]})
    labels = frame["label"] if "label" in frame else [None] * len(frame)
    out["y_true"] = [CLASSES.index(v) if v in CLASSES else -1 for v in labels]
    out["y_pred"] = p.argmax(axis=1) if len(p) else []
    for i, cls in enumerate(CLASSES):
        out[f"prob_{cls}"] = p[:, i]
    return out[PREDICTION_COLUMNS]

