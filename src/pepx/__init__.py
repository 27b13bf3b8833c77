"""pepx: PEPX-ResNet and baselines for 3-class chest X-ray classification.

Classes: Normal / Non-COVID pneumonia / COVID-19.
"""

import importlib

__version__ = "0.1.0"

#: Class order used everywhere in pepx (label index = position).
CLASSES: tuple[str, ...] = ("normal", "pneumonia", "COVID-19")
#: The paper's names for the same classes, in the same order.
CLASS_DISPLAY: tuple[str, ...] = ("Normal", "Non-COVID", "COVID-19")


def __getattr__(name: str):
    """`pepx.load_bundle` and `pepx.Predictor` on first use, so `import pepx` stays light."""
    if name in ("load_bundle", "Predictor"):
        return getattr(importlib.import_module("pepx.serving"), name)
    raise AttributeError(f"module 'pepx' has no attribute {name!r}")
