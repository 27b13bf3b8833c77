"""Caveats: what the model card says about a class, shown next to every result that calls it.

At export, each class gets one sentence from the bundle's own test split, counted on *adult* films (the
clinically relevant group, where telling a child from an adult cannot help): of the adult films called that
class, how many were something else, and the precision of such a call with its CI. `pepx predict`, the
API and the page show the sentence of the predicted class next to the result (issue 15: an adult film called
COVID-19 may be another pneumonia). Stored in config.json as ``caveats: {class: sentence}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pepx import CLASS_DISPLAY, CLASSES
from pepx.evaluation.report import fmt_ci


def caveats_from_adults(adults: dict[str, Any]) -> dict[str, str]:
    """One sentence per class predicted at least once among adults, from an
    `pepx.evaluation.adults.adults_summary` of the test split ({} when it holds no adult)."""
    if adults.get("note"):
        return {}
    cm = np.asarray(adults["confusion_matrix"])  # rows: true class, columns: predicted class
    per_class = adults["per_class"].set_index("class")
    out: dict[str, str] = {}
    for k, cls in enumerate(CLASSES):
        called = int(cm[:, k].sum())
        if not called:
            continue
        wrong = [f"{int(cm[j, k])} {CLASS_DISPLAY[j]}" for j in range(len(CLASSES)) if j != k and cm[j, k]]
        row = per_class.loc[cls]
        precision = fmt_ci(row["precision"], row["precision_low"], row["precision_high"])
        missed = int(cm[k].sum() - cm[k, k])
        out[cls] = (f"Of the {called} adult test films this model called {CLASS_DISPLAY[k]}, "
                    + (f"{called - int(cm[k, k])} were not ({', '.join(wrong)})" if wrong
                       else "none was wrong")
                    + f": precision {precision}; it missed {missed} of {int(cm[k].sum())} adult "
                    f"{CLASS_DISPLAY[k]} films.")
    return out


def caveat_for(config: dict[str, Any], label: str | None) -> str | None:
    """The bundle's caveat for a prediction of class ``label`` (None: no label, or an older bundle)."""
    if label is None:
        return None
    return (config.get("caveats") or {}).get(label)


__all__ = ["caveat_for", "caveats_from_adults"]
