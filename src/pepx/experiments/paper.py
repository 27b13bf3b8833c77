"""The paper's Tables 1-4, verbatim (Zhang & Zhang, "Deep Learning for COVID-19 Recognition", section 4.2).

Rows keep the paper's names. The paper does not say which loss each row used; "This work" is PEPX-ResNet with
the loss the paper recommends (focal). Values are fractions although the table headers say "(%)". Table 3 is
the paper's "Sensitive" (recall). Each is one run on 100 test images per class, without an interval.
"""

from __future__ import annotations

import pandas as pd

from pepx import CLASS_DISPLAY, CLASSES

#: Paper row name -> pepx model name.
PAPER_ROWS: dict[str, str] = {"Resnet18": "resnet18", "COVID-Net": "covidnet", "This work": "pepx_resnet"}

#: Table 1: accuracy.
TABLE1_ACCURACY: dict[str, float] = {"Resnet18": 0.94667, "COVID-Net": 0.933, "This work": 0.95666}

#: Tables 2-4: per class, in `CLASSES` order (Normal, Non-COVID, COVID-19).
TABLE2_PRECISION: dict[str, tuple[float, float, float]] = {
    "Resnet18": (0.85, 0.95237, 0.96),
    "COVID-Net": (0.9047, 0.9126, 0.989),
    "This work": (0.967, 0.933, 0.97),
}
TABLE3_RECALL: dict[str, tuple[float, float, float]] = {
    "Resnet18": (0.97, 0.79, 0.97),
    "COVID-Net": (0.95, 0.94, 0.91),
    "This work": (0.90, 0.98, 0.99),
}
TABLE4_F1: dict[str, tuple[float, float, float]] = {
    "Resnet18": (0.906, 0.8636, 0.9649),
    "COVID-Net": (0.9268, 0.9260, 0.9478),
    "This work": (0.932, 0.9559, 0.979),
}

#: Table number -> (title as in the paper, metric kind, values).
TABLES: dict[int, tuple[str, str, dict]] = {
    1: ("Table 1. The accuracy of different networks.", "accuracy", TABLE1_ACCURACY),
    2: ("Table 2. Precious of different networks of these three classes.", "precision", TABLE2_PRECISION),
    3: ("Table 3. Sensitive of different networks of these three classes.", "recall", TABLE3_RECALL),
    4: ("Table 4. F1 score of different networks of these three classes.", "f1", TABLE4_F1),
}


def paper_value(table: int, model: str, cls: str | None = None) -> float | None:
    """The paper's number for ``model`` (a pepx model name) in ``table``; ``cls`` for Tables 2-4."""
    row = {v: k for k, v in PAPER_ROWS.items()}.get(model)
    values = TABLES[table][2]
    if row is None or row not in values:
        return None
    return values[row] if cls is None else values[row][CLASSES.index(cls)]


def paper_frame(table: int) -> pd.DataFrame:
    """A paper table as a frame indexed by the paper's row names."""
    values = TABLES[table][2]
    if table == 1:
        return pd.DataFrame({"Accuracy": values})
    return pd.DataFrame.from_dict(values, orient="index", columns=list(CLASS_DISPLAY))
