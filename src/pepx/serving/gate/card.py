"""The gate in the model card and in config.json: a compact summary of `pepx gate evaluate`'s tables, and the
card's "Input gate" section (between markers, so refitting the gate replaces only that section)."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from pepx.evaluation.report import fmt_ci
from pepx.markdown import markdown_table

BEGIN, END = "<!-- pepx gate -->", "<!-- /pepx gate -->"


def _triple(row: Any, name: str) -> list[float | None]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)
            for v in (getattr(row, name), getattr(row, f"{name}_low"), getattr(row, f"{name}_high"))]


def evaluation_summary(tables: dict[str, pd.DataFrame], what: str) -> dict[str, Any]:
    """config.json's `gate.evaluation`: per kind AUROC, FPR at 95 % TPR, rejected; frontal films rejected /
    unfamiliar overall, by source and by age group; each `[value, low, high]`; `what` says on what."""
    out: dict[str, Any] = {"on": what, "kinds": {}, "frontal": {}}
    for r in tables["kinds"].itertuples():
        out["kinds"][r.kind] = {"images": int(r.n_other), "from": r.set, "auroc": _triple(r, "auroc"),
                                "fpr95": _triple(r, "fpr95"), "rejected": _triple(r, "rejected")}
    for r in tables["frontal"].itertuples():
        key = "all" if r.group == "all" else f"{r.group}={r.value}"
        out["frontal"][key] = {"films": int(r.n), "rejected": _triple(r, "rejected"),
                               "unfamiliar": _triple(r, "unfamiliar")}
    return out


def gate_card(section: dict[str, Any]) -> str:
    """The card's "Input gate" section, with its markers."""
    t, fitted = section["thresholds"], section.get("fitted_on", {})
    real = fitted.get("real_ood")
    lines = [BEGIN, "## Input gate", "",
             "Before a class is reported, a gate asks whether the image is a frontal chest X-ray at all, and "
             "whether it is like the films this model was trained on. **Rejected** images (another modality "
             "or body part, a lateral film, a photo, a blank, inverted or rotated image) get no class; "
             "**unfamiliar** frontal films keep their class, marked low trust. `--no-gate` turns it off.", "",
             "- **gate score**: P(not a frontal chest X-ray), a logistic regression on every stage's pooled "
             f"features and their Mahalanobis distances; **rejected** at >= {t['reject']:.3f}",
             "- **distance**: mean standardised log Mahalanobis distance to the nearest class mean over the "
             f"stages (0 = a typical training film); **unfamiliar** at >= {t['unfamiliar']:.3f}",
             f"- fitted on {fitted.get('train_films', '?')} training films"
             + (" (each source weighing the same)" if fitted.get("weights") == "source-balanced" else "")
             + (f", {fitted['framed']['images']} of them framed as another site might (borders, tilt, "
                "processing)" if fitted.get("framed", {}).get("images") else "")
             + f" and {fitted.get('synthetic', {}).get('images', '?')} synthetic corruptions of them"
             + (f", plus {real['images']} real images of other kinds ({real['set']}, development part only)"
                if real else "")
             + f"; thresholds set on {fitted.get('val_films', '?')} validation films "
             f"({fitted.get('reject_rate', 0):.0%} rejected, {fitted.get('unfamiliar_rate', 0):.0%} "
             "unfamiliar)",
             ""]
    ev = section.get("evaluation")
    if ev:
        kinds = pd.DataFrame([{"kind": k, "images": v["images"], "from": v["from"],
                               "AUROC": _ci(v["auroc"]), "FPR at 95 % TPR": _ci(v["fpr95"]),
                               "rejected": _ci(v["rejected"])} for k, v in ev["kinds"].items()])
        frontal = pd.DataFrame([{"frontal test films": k, "films": v["films"], "rejected": _ci(v["rejected"]),
                                 "unfamiliar": _ci(v["unfamiliar"])} for k, v in ev["frontal"].items()])
        lines += [f"Measured on {ev['on']} (95 % CIs over patients / cases):", "", markdown_table(kinds),
                  "", markdown_table(frontal), ""]
    return "\n".join(lines + [END])


def _ci(values: list[float | None]) -> str:
    return fmt_ci(*[float("nan") if v is None else v for v in values])


def with_gate_card(card: str, section: dict[str, Any]) -> str:
    """`card` with its gate section replaced (or appended when it has none)."""
    block = gate_card(section)
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if pattern.search(card):
        return pattern.sub(lambda _: block, card)
    return card.rstrip("\n") + "\n\n" + block + "\n"


__all__ = ["evaluation_summary", "gate_card", "with_gate_card"]
