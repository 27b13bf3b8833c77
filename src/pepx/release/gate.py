"""What `pepx gate fit` and `pepx gate evaluate` do (the CLI only parses and prints), and the gate step of
`pepx export` (`fit_and_report`). The fitting and scoring themselves are `pepx.serving.gate`'s; this module
adds the report folders (`pepx.training.evaluate.check_report_folder`), which is why it is not there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pepx.data import load_source, load_split
from pepx.errors import ConfigError
from pepx.evaluation.bootstrap import N_BOOT, check_bootstrap
from pepx.serving.bundle import Bundle, load_bundle
from pepx.serving.gate.build import fit_bundle_gate
from pepx.serving.gate.card import evaluation_summary, with_gate_card
from pepx.serving.gate.evaluate import evaluate_gate
from pepx.serving.gate.section import GATE_KEY
from pepx.training.evaluate import check_report_folder

Say = Callable[[str], Any]


def fit_and_report(bundle: Bundle, split: pd.DataFrame, ood: str | Path | None = None,
                   report_dir: str | Path | None = None, n_boot: int = N_BOOT, say: Say = print) -> Bundle:
    """`bundle` with a gate fitted on `split` (train / val rows) and, when the split has test rows, measured
    on them (and on `ood`'s test part) into `report_dir`; the numbers go into config.json and the card."""
    gated = fit_bundle_gate(bundle, split, ood, say=say)
    if report_dir is not None and (split["split"] == "test").any():
        result = evaluate_gate(gated, split, report_dir, ood=ood, n_boot=n_boot, say=say)
        what = f"the split's {int((split['split'] == 'test').sum())} test films" + (
            f" and the test part of {ood}" if ood else "")
        section = {**gated.config[GATE_KEY], "evaluation": evaluation_summary(result["tables"], what)}
        gated = gated.with_changes(config={GATE_KEY: section})
        say(f"gate: evaluation in {Path(report_dir) / 'report.md'}")
    return gated.with_changes(card=with_gate_card(gated.card, gated.config[GATE_KEY]))


def _free_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; name a new folder (or use "
                          "--in-place to refit the gate of the bundle itself)")


def fit_command(bundle_path: str, split: str, out: str | None = None, in_place: bool = False,
                ood: str | None = None, report: str | None = None, n_boot: int = N_BOOT,
                say: Say = print) -> list[str]:
    """`pepx gate fit`: a gated copy of the bundle in the new folder `out`, or (`in_place`, the user's
    explicit choice) the bundle's own gate file, config.json gate section and card gate section rewritten;
    weights untouched. The test evaluation goes to `report` (default: `OUT-gate-report` next to `out`, or
    `gate-report-ID` in the working folder with `in_place`)."""
    if (out is None) == (not in_place):
        raise ConfigError("name either --out NEW_FOLDER (a gated copy) or --in-place (rewrite only the gate "
                          "of the bundle itself)")
    check_bootstrap(n_boot)
    bundle = load_bundle(bundle_path)
    target = bundle.path if in_place else Path(out)
    if not in_place:
        _free_folder(target)
    frame = load_split(split)
    default = Path(f"gate-report-{bundle.id}") if in_place else target.parent / f"{target.name}-gate-report"
    report_dir = check_report_folder(report or default, "--report")
    gated = fit_and_report(bundle, frame, ood, report_dir, n_boot, say)
    saved = gated.save(target)
    return [f"bundle: {saved.path} (gate {saved.gate.file}, sha256 {saved.gate.sha256[:16]}...; weights "
            f"unchanged, sha256 {saved.sha256[:16]}...)"]


def evaluate_command(bundle_path: str, split: str, out: str, ood: str | None = None,
                     unseen: str | None = None, unseen_sources: list[str] | None = None,
                     n_boot: int = N_BOOT, say: Say = print) -> list[str]:
    """`pepx gate evaluate`: the report (`pepx.serving.gate.evaluate`); writes nothing into the bundle."""
    check_bootstrap(n_boot)
    out = check_report_folder(out, "--out")
    bundle = load_bundle(bundle_path)
    frame = load_split(split)
    unseen_rows = None
    if unseen is not None:
        manifest = load_source(unseen).manifest
        if unseen_sources:
            manifest = manifest[manifest["source"].isin(unseen_sources)]
        unseen_rows = manifest[~manifest["path"].isin(set(frame["path"]))].reset_index(drop=True)
        if unseen_rows.empty:
            raise ConfigError(f"--unseen {unseen}: no films left (sources {unseen_sources or 'all'}, minus "
                              "the split's)")
    result = evaluate_gate(bundle, frame, out, ood=ood, unseen=unseen_rows, n_boot=n_boot, say=say)
    return [result["report"], f"report: {Path(out) / 'report.md'}"]


__all__ = ["evaluate_command", "fit_and_report", "fit_command"]
