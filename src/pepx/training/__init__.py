"""Training engine: `TrainConfig`, `fit` (PyTorch Lightning), `load_run` and `predict`."""

from pepx.training.config import TrainConfig
from pepx.training.run import default_run_dir, fit, load_run, predict

__all__ = ["TrainConfig", "default_run_dir", "fit", "load_run", "predict"]
