"""Training engine: `TrainConfig`, `fit` (PyTorch Lightning), the run folder (`RunLayout`), `load_run`,
`predict` and run-level evaluation (`evaluate_run`).

Names are imported lazily (module ``__getattr__``), so ``from pepx.training import RunLayout`` or
``TrainConfig`` does not import lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "RunLayout": "pepx.training.layout",
    "RunState": "pepx.training.layout",
    "TrainConfig": "pepx.training.config",
    "default_run_dir": "pepx.training.run",
    "fit": "pepx.training.run",
    "load_run": "pepx.training.run",
    "predict": "pepx.training.run",
    "evaluate_run": "pepx.training.evaluate",
}

if TYPE_CHECKING:
    from pepx.training.config import TrainConfig
    from pepx.training.evaluate import evaluate_run
    from pepx.training.layout import RunLayout, RunState
    from pepx.training.run import default_run_dir, fit, load_run, predict


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pepx.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["RunLayout", "RunState", "TrainConfig", "default_run_dir", "evaluate_run", "fit", "load_run",
           "predict"]
