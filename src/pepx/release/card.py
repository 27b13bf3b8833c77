"""The model card (a bundle's README.md): what the model is, what it was trained and tested on, how well it
does with 95 % CIs, how calibrated it is, where it fails, and what it must not be used for.

Caveats (`caveats_from_adults`): at export, each class gets one sentence from the bundle's own test split,
counted on *adult* films (the clinically relevant group, where telling a child from an adult cannot help): of
the adult films called that class, how many were something else, and the precision of such a call with its
CI. Stored in config.json as ``caveats: {class: sentence}``; `pepx predict`, the API and the page show the
sentence of the predicted class next to the result (`Bundle.caveat`; issue 15: an adult film called COVID-19
may be another pneumonia).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pepx import CLASS_DISPLAY, CLASSES
from pepx.evaluation.adults import adults_markdown
from pepx.evaluation.breakdown import BREAKDOWN_METRICS
from pepx.evaluation.report import breakdown_markdown, class_label, fmt_ci, metrics_markdown
from pepx.markdown import markdown_table
from pepx.serving.bundle import SHIPPED


def intended_use(n_train: int, data: str) -> str:
    """The card's *Intended use* paragraph, saying what the model was trained on (`n_train` images of the
    data SOURCE `data`)."""
    if data.split(":", 1)[0] == "synthetic":
        trained = (f"It was trained on {n_train:,} synthetic films drawn by pepx (not radiographs): it has "
                   "never seen a real chest X-ray")
    else:
        trained = (f"It was trained on {n_train:,} public images whose labels, sources and ages are "
                   "entangled (see *Known failure modes*)")
    return ("**Research use only.** This model is not a medical device and must not be used to diagnose, "
            f"triage or treat anyone. {trained}; its numbers describe that data, not a clinical population. "
            "Use it to study methods, to reproduce the paper's experiment, or as a starting point that you "
            "re-train and re-validate on your own data.")


def _ci_row(table: pd.DataFrame, metric: str) -> str:
    row = table.set_index("metric").loc[metric]
    return fmt_ci(row["value"], row["low"], row["high"])


def model_card(s: dict[str, Any]) -> str:
    """Markdown card from the summary `pepx.release.build.bundle_from_run` assembles."""
    cfg, bundle, ev = s["train_config"], s["bundle"], s["evaluation"]
    arch = bundle["architecture"]
    w = bundle["weights"]
    table = ev["metrics"]
    lines = [
        f"# {bundle['id']} {bundle['version']}", "",
        f"{arch['name']} ({', '.join(f'{k}={v}' for k, v in arch['kwargs'].items()) or 'defaults'}), "
        f"{w['parameters'] / 1e6:.2f} M parameters, trained with the {cfg['loss']} loss to sort a frontal "
        f"chest X-ray into {', '.join(CLASS_DISPLAY)}. Input: one grayscale image, centre-cropped to a "
        f"square and resized to {bundle['input']['image_size']} px (config.json lists every preprocessing "
        "step). "
        f"Weights: `model.safetensors`, {w['bytes'] / 1e6:.1f} MB ({' + '.join(w['dtypes'])}), sha256 "
        f"`{w['sha256']}`.", "",
        "## Intended use", "", intended_use(_n_train(s["split_counts"]), cfg["data"]), "",
        *_adults(ev), *_failure_modes(s),
        "## Use it", "", *_usage(bundle["id"], s["bundle_dir"]),
        "## Training", "",
        f"Run `{s['run']}` on `{cfg['data']}`: {cfg['epochs']} epochs, batch {cfg['batch_size']}, "
        f"{cfg['optimizer']} lr {cfg['lr']} ({cfg['scheduler']})"
        + (f", weight decay {cfg['weight_decay']}" if cfg.get("weight_decay") else "")
        + (f", weight EMA {cfg['ema_decay']}" if cfg.get("ema_decay") else "")
        + "".join(f", preprocessing {k} = {v}" for k, v in (cfg.get("preprocess") or {}).items())
        + f", augmentation {'on' if cfg['augment'] else 'off'}, seed {cfg['seed']}, {cfg['loss']} loss"
        + "".join(f", {k} = {v}" for k, v in (cfg["loss_kwargs"] or {}).items()) + "."
        + (f" Recipe: `{s['command']}`." if s.get("command") else ""), "",
        "Images per split and class (whole patients per split; leak check: "
        f"{s['leak']}):", "", markdown_table(s["split_counts"]), "",
    ]
    if s["confound_warnings"]:
        lines += ["Confounds in this data (pepx.data.confound_report):", ""]
        lines += [f"- {w_}" for w_ in s["confound_warnings"]] + [""]
    lines += [
        f"## Test metrics ({ev['n_images']} images of {ev['n_patients']} patients)", "",
        f"95 % percentile intervals from {ev['bootstrap']['n_boot']:,} bootstrap resamples of test "
        "*patients* within each class. Probabilities are calibrated (below); the decision is the most "
        "probable class.", "",
        metrics_markdown(table), "", "AUROC, each class against the others:", "",
        metrics_markdown(ev["auroc"]), "",
    ]
    lines += _calibration(s) + _operating_points(s)
    for col, groups in ev["breakdowns"].items():
        lines += [f"## Test metrics by {col.replace('_', ' ')}", "",
                  breakdown_markdown(groups, BREAKDOWN_METRICS), ""]
    lines += _checks(s) + _history(s.get("history") or [])
    return "\n".join(lines)


def _adults(ev: dict[str, Any]) -> list[str]:
    """The card's lead table: adults only (no child-versus-adult shortcut), by view."""
    if "adults" not in ev:
        return []
    return [*adults_markdown(ev["adults"], heading="##", whose="test split"),
            "The clinically relevant question, so it comes first; the whole test split follows below.", ""]


def _history(history: list[dict[str, str]]) -> list[str]:
    """Earlier versions of this bundle and what they did (`pepx export --history FILE.json`)."""
    if not history:
        return []
    return ["## History", "", markdown_table(pd.DataFrame(history)), ""]


def _usage(bundle_id: str, folder: str) -> list[str]:
    shipped = bundle_id == SHIPPED
    model = "" if shipped else f" --model {folder}"
    lines = ["This bundle ships with pepx: no `--model` and no download needed.", ""] if shipped else []
    return lines + [
        "```bash", f"pepx predict FILM.png{model}                      # class and calibrated probabilities",
        f"pepx predict FOLDER/{model} --out predictions.csv --cam heatmaps/   # many films, Grad-CAM maps",
        "```", "", "```python", "from pepx.serving import Predictor",
        f"predictor = Predictor.from_bundle({None if shipped else folder!r})",
        "predictor.predict(['film.png'])[0].probabilities", "```", ""]


def _calibration(s: dict[str, Any]) -> list[str]:
    cal = s["calibration"]
    out = ["## Calibration", ""]
    if cal["table"] is None:
        return out + [f"Not calibrated (temperature 1): {cal['fitted_on']}.", ""]
    t = cal["table"]
    out += [f"Temperature scaling: T = {cal['temperature']:.3f}, fitted on {cal['fitted_on']}. On the test "
            f"split, expected calibration error {_ci_row(t, 'ece_before')} before and "
            f"{_ci_row(t, 'ece_after')} after (change {_ci_row(t, 'ece_change')}); negative log-likelihood "
            f"{_ci_row(t, 'nll_before')} before and {_ci_row(t, 'nll_after')} after (change "
            f"{_ci_row(t, 'nll_change')}). Scaling changes no decision: accuracy, F1 and AUROC are the same "
            "before and after.", ""]
    return out


def _operating_points(s: dict[str, Any]) -> list[str]:
    points = s["operating_points"]
    if not points:
        return []
    rows = []
    for cls, p in points.items():
        t = p["test"]
        rows.append({"class": class_label(f"x_{cls}").removeprefix("x "),
                     "chosen on validation": f"sensitivity >= {p['target_sensitivity']:.2f}",
                     "threshold": f"{p['threshold']:.3f}",
                     "validation sensitivity": f"{p['val_sensitivity']:.3f}",
                     **{f"test {m}": fmt_ci(t[m], t[f"{m}_low"], t[f"{m}_high"])
                        for m in ("sensitivity", "specificity")}})
    return ["## Operating points", "",
            "A class is *flagged* when its calibrated probability reaches its threshold (the `flagged` "
            "column of `pepx predict`), whatever the most probable class is.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def _failure_modes(s: dict[str, Any]) -> list[str]:
    out = ["## Known failure modes", ""]
    short = s.get("shortcut")
    if short and short["n"]:
        normal = short["n"] - short["as_covid"] - short["correct"]
        out += [f"- **Adult pneumonia** (bundle 1.0 called most of it COVID-19). Of the {short['n']} adult "
                f"pneumonia films in the test split, {short['correct']} are predicted pneumonia, "
                f"{short['as_covid']} COVID-19 and {normal} normal. In "
                f"the training split {short['train_covid_adult']:.0%} of the COVID-19 images are adults' and "
                f"{short['train_pneumonia_child']:.0%} of the pneumonia images children's: a network can "
                "learn \"adult with opaque lungs => COVID-19\" and so recognise age (and hospital) as much "
                "as disease."]
    caveats = s["bundle"].get("caveats") or {}
    if caveats:
        out += ["- **What a call means for an adult** (shown next to every result of `pepx predict`, the API "
                "and the page):"]
        out += [f"  - {CLASS_DISPLAY[CLASSES.index(c)]}: {text}" for c, text in caveats.items()]
    gated = s.get("gate") == "on"
    out += [
        "- **Source and age shortcuts.** Where a hospital or an age group supplies one class only, the "
        "network can score by recognising the hospital's look or the patient's age; read the per-source and "
        "per-age tables above before trusting the overall numbers.",
        ("- **Out of scope inputs.** The input gate (below) rejects most images that are not frontal chest "
         "X-rays and marks films unlike the training films `unfamiliar`; what it lets through still gets a "
         "class." if gated else
         "- **Out of scope inputs.** Lateral views, CT slices, photographs of films, images with large text "
         "overlays or non-chest images are still given a class: this bundle has no input gate."),
        "- **Labels.** Many COVID-19 labels are patient-level PCR results, not what the film shows.", ""]
    return out


def _checks(s: dict[str, Any]) -> list[str]:
    checks = s.get("checks") or []
    if not checks:
        return []
    rows = [{"image": c["path"], "label": c["label"],
             **{f"p {d}": f"{p:.4f}" for d, p in zip(CLASS_DISPLAY, c["probabilities"], strict=True)}}
            for c in checks]
    return ["## Reference predictions", "",
            f"Test images of `{s['train_config']['data']}` with the probabilities this bundle gives them "
            "(config.json `checks`; the test suite re-scores them):", "",
            markdown_table(pd.DataFrame(rows)), ""]


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


def _n_train(counts: pd.DataFrame) -> int:
    """Training images of a `split, <class>...` count frame."""
    rows = counts[counts["split"] == "train"]
    return int(rows.drop(columns="split").to_numpy().sum())


__all__ = ["CLASSES", "caveats_from_adults", "intended_use", "model_card"]
