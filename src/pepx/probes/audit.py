"""`audit` (`pepx audit RUN|DATA`): run the chosen probes on a target and write the report folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from pepx.data import DataError
from pepx.errors import ConfigError
from pepx.probes.compare import compare_features, compare_models, comparison_markdown, plot_comparison
from pepx.probes.data_probes import processing_probe, source_column, source_probe
from pepx.probes.images import changes
from pepx.probes.model_probes import BLANKED, UNTOUCHED, Scores, changes_table, features_probe, score_runs
from pepx.probes.report import (
    FILES,
    MARKER,
    changes_markdown,
    check_out,
    plot_invariance,
    probe_table,
    recall_table,
    within_table,
    write_json,
)
from pepx.probes.results import ProbeResult
from pepx.probes.settings import ProbeSettings, choose_probes
from pepx.probes.target import AuditTarget, resolve_target

log = logging.getLogger("pepx.probes")
CHANCE = 1.0 / 3.0
DEFAULT = "default"
#: Issue 15's goal: COVID-19 recall after each change within 5 points of the untouched films'.
INVARIANT = 0.05


@dataclass
class AuditReport:
    """What an audit found: probe results, the blanked and invariance tables, and where it was written."""

    out: Path
    target: AuditTarget
    probes: list[str]
    results: list[ProbeResult] = field(default_factory=list)
    blanked: pd.DataFrame | None = None
    invariance: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    #: `--compare`: the other runs of the CV folder, and each measure of both with its paired difference
    other: AuditTarget | None = None
    comparison: pd.DataFrame | None = None
    n_compared: int = 0

    @property
    def names(self) -> tuple[str, str]:
        """How the two compared sets of runs are called (``default`` = the profile's own recipe)."""
        other = self.other.variant if self.other is not None else ""
        return self.target.variant or DEFAULT, other or DEFAULT

    def lines(self) -> list[str]:
        """The short summary printed by `pepx audit`."""
        out = [r.line() for r in self.results]
        if self.blanked is not None:
            acc = self.blanked.set_index("metric").loc["accuracy"]
            out.append(f"lungs blanked: accuracy {acc['value']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}] "
                       f"(untouched {acc['reference']:.3f}, chance {CHANCE:.3f})")
        if self.invariance is not None:
            covid = self.invariance[self.invariance["metric"] == "recall_COVID-19"]
            out += [f"COVID-19 recall after {r.condition}: {r.value:.3f} (untouched {r.reference:.3f}; "
                    f"difference {r.diff:+.3f} [{r.diff_low:+.3f}, {r.diff_high:+.3f}]; "
                    f"{'within' if abs(r.diff) <= INVARIANT else 'NOT within'} {INVARIANT * 100:.0f} points)"
                    for r in covid.itertuples()]
        if self.comparison is not None:
            this, other = self.names
            out += [f"{r.measure}: {this} {r.this:.3f}, {other} {r.compared:.3f} (difference {r.diff:+.3f} "
                    f"[{r.diff_low:+.3f}, {r.diff_high:+.3f}]"
                    + ("" if pd.isna(r.closer) else f"; nearer {r.ideal:.3f} by {-r.closer:+.3f} "
                       f"[{-r.closer_high:+.3f}, {-r.closer_low:+.3f}]") + ")"
                    for r in self.comparison.itertuples()]
        return [*out, f"report: {self.out / 'report.md'}"]


def default_out(spec: str, variant: str = "", compare: str | None = None) -> Path:
    """``TARGET/audit`` (``audit-VARIANT``, ``audit-vs-OTHER``: one folder per question), ``runs/audit`` for a
    data source."""
    folder = Path(spec)
    name = "audit" + (f"-{variant}" if variant else "") + (f"-vs-{compare}" if compare is not None else "")
    return folder / name if folder.is_dir() else Path("runs") / "audit"


def _plan(target: AuditTarget, asked: Sequence[str] | None,
          settings: ProbeSettings) -> tuple[list[str], list[str]]:
    """The probes to run and notes on those left out; checks each probe's data before anything runs."""
    probes, notes = choose_probes(asked, target.has_model), []
    tested = pd.concat([r.test for r in target.runs], ignore_index=True) if target.runs else target.data
    for probe in probes:
        if probe == "source":
            source_column(target.data, f"{target.spec}: source probe")
        elif probe == "features":
            source_column(tested, f"{target.spec}: features probe")
        elif probe == "processing" and not target.data.get("source", pd.Series()).eq(
                settings.processed_source).any():
            if asked is not None:
                processing_probe(target.data, settings)  # raises the DataError that says why
            notes.append(f"processing probe not run: no film of source {settings.processed_source!r} "
                         "(set processed_source=NAME)")
    return [p for p in probes if not (p == "processing" and notes)], notes


def _report_text(report: AuditReport, settings: ProbeSettings) -> str:
    t = report.target
    parts = [f"# Shortcut audit of `{t.spec}`", "", *[f"- {n}" for n in [*t.notes, *report.notes]], "",
             f"Probes: {', '.join(report.probes)}. Settings: "
             + " ".join(f"`{k}={v}`" for k, v in settings.to_dict().items()) + ".", ""]
    for probe, title in (("source", "Source probe: the film alone"),
                         ("processing", f"Processing probe: `{settings.processed_source}` against other "
                                        "adult films"),
                         ("features", "Source from the disease model's penultimate features (linear probe)")):
        results = [r for r in report.results if r.probe == probe]
        if results:
            parts += [f"## {title}", "", probe_table(results), "",
                      "Within each disease class (the same predictions; the label cannot help there):", "",
                      within_table(results), "", "Recall of each probed class:", "",
                      recall_table(results), ""]
            parts += [f"- {n}" for n in dict.fromkeys(n for r in results for n in r.notes)] + [""]
    if report.blanked is not None:
        parts += ["## Lungs blanked (Maguolo & Nanni 2021)", "",
                  f"Rectangle {list(settings.lung_box)} (top, bottom, left, right as fractions of the input "
                  f"side) set to the film's mean. Chance accuracy: {CHANCE:.3f}.", "",
                  changes_markdown(report.blanked), ""]
    if report.invariance is not None:
        parts += ["## Processing invariance", "",
                  f"The same test films untouched and after histogram equalisation (`hist`), JPEG "
                  f"re-compression at quality {settings.jpeg_quality} (`jpeg`) and a resize to "
                  f"{settings.resize} of the side and back (`resize`); differences are paired (same films, "
                  "same patient resamples).", "", changes_markdown(report.invariance), "",
                  "![invariance](invariance.png)", ""]
    if report.comparison is not None:
        this, other = report.names
        parts += [f"## `{this}` against `{other}`", "", *[f"- {n}" for n in report.other.notes], "",
                  f"The same measures of both sets of runs on the {report.n_compared} test films both "
                  f"scored; difference = `{this}` - `{other}`, its interval from the same patient resamples "
                  "for both. Changes after a processing step are changed - untouched (0 = invariant). A "
                  "model that leans less on the hospital has a features probe nearer chance, a blanked "
                  "accuracy nearer chance (1/3) and changes nearer 0: *distance to it* is the paired "
                  f"difference of the two distances to that value, negative when `{this}` is nearer.", "",
                  comparison_markdown(report.comparison, this, other), "",
                  "![comparison](comparison.png)", ""]
    parts += ["## How to read", "",
              "- Balanced accuracy is the mean recall over the probed classes (chance = 1 / classes); "
              "*label alone* is the same probe given only each film's disease label: sources hold "
              "different classes, so a model that knows only the disease already tells sources apart that "
              "well. A probe far above *label alone* reads the hospital, not only the disease.",
              "- Intervals: 95 % percentile intervals over patient resamples (within each probed class), "
              f"{settings.n_boot} resamples; probes are scored out-of-fold ({settings.folds} patient-grouped "
              "folds).", ""]
    return "\n".join(parts)


def _write(report: AuditReport, settings: ProbeSettings, predictions: pd.DataFrame | None) -> None:
    out = report.out
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:  # an earlier audit's files that this one does not write again
        if name != MARKER and (out / name).exists():
            (out / name).unlink()
    if report.results:
        rows = [row for r in report.results for row in r.rows()]
        pd.DataFrame(rows).to_csv(out / "probes.csv", index=False)
        pd.concat([r.predictions for r in report.results if r.predictions is not None]).to_csv(
            out / "probe_predictions.csv", index=False)
    if report.blanked is not None:
        report.blanked.to_csv(out / "blanked.csv", index=False)
    if report.invariance is not None:
        report.invariance.to_csv(out / "invariance.csv", index=False)
        plot_invariance(report.invariance, out / "invariance.png",
                        f"Processing invariance: {report.target.spec}"
                        + (f" ({report.target.variant})" if report.target.variant else ""))
    if report.comparison is not None:
        report.comparison.to_csv(out / "comparison.csv", index=False)
        plot_comparison(report.comparison, out / "comparison.png", *report.names,
                        f"{report.target.spec}: {' against '.join(report.names)}")
    if predictions is not None:
        predictions.to_csv(out / "model_predictions.csv", index=False)
    (out / "report.md").write_text(_report_text(report, settings))
    write_json(out / MARKER, {
        "target": report.target.spec, "kind": report.target.kind, "probes": report.probes,
        "settings": settings.to_dict(), "notes": [*report.target.notes, *report.notes],
        "results": [{"probe": r.probe, "setting": r.setting, "classes": r.classes, "scores": r.scores,
                     "label_only": r.baseline, "recall": r.recall, "within_class": r.within,
                     "n_images": r.n_images,
                     "n_patients": r.n_patients, "notes": r.notes} for r in report.results],
        "blanked": None if report.blanked is None else report.blanked.to_dict("records"),
        "invariance": None if report.invariance is None else report.invariance.to_dict("records"),
        "compared_with": None if report.other is None else report.names[1],
        "comparison": None if report.comparison is None else report.comparison.to_dict("records")})


def audit(spec: str, out: str | Path | None = None, probes: Sequence[str] | None = None,
          settings: ProbeSettings | None = None, cell: str | None = None, variant: str = "",
          compare: str | None = None) -> AuditReport:
    """Run ``probes`` (default: every probe the target allows) on ``spec`` (a run folder, a `pepx reproduce
    --cv` folder, whose runs ``cell`` and ``variant`` pick, or a data source) and write the report into
    ``out`` (default: `default_out`). ``compare``: another variant of the same CV folder (``default``: the
    profile's own recipe) whose model probes are run too and set beside this one's with paired differences.
    Every check (target, probe names, data, output folder) comes before any probe runs or any file is
    written."""
    settings = settings or ProbeSettings()
    target = resolve_target(spec, cell=cell, seed=settings.seed, variant=variant)
    chosen, notes = _plan(target, probes, settings)
    other = _compared(spec, target, compare, cell, settings, chosen)
    report = AuditReport(check_out(Path(out) if out is not None else default_out(spec, variant, compare)),
                         target, chosen, notes=notes, other=other)
    saved = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        predictions = _run(report, settings)
    finally:
        torch.set_num_threads(saved)
    _write(report, settings, predictions)
    return report


def _compared(spec: str, target: AuditTarget, compare: str | None, cell: str | None,
              settings: ProbeSettings, chosen: list[str]) -> AuditTarget | None:
    """The runs ``compare`` names (`ConfigError` unless a CV folder's other variant and a model probe)."""
    if compare is None:
        return None
    other = "" if compare == DEFAULT else compare
    if target.kind != "cv":
        raise ConfigError(f"--compare {compare}: compares two variants of a `pepx reproduce --cv` folder; "
                          f"{spec} is not one")
    if other == target.variant:
        raise ConfigError(f"--compare {compare}: the runs audited already; name another variant")
    if not {"features", "blanked", "invariance"} & set(chosen):
        raise ConfigError(f"--compare {compare}: compares model probes; add features, blanked or invariance")
    return resolve_target(spec, cell=cell, seed=settings.seed, variant=other)


def _run(report: AuditReport, settings: ProbeSettings) -> pd.DataFrame | None:
    chosen, target = report.probes, report.target
    if "source" in chosen:
        report.results += source_probe(target.data, settings)
    if "processing" in chosen:
        report.results += processing_probe(target.data, settings)
    if not target.has_model or not {"features", "blanked", "invariance"} & set(chosen):
        return None
    invariance = list(changes()) if "invariance" in chosen else []
    conditions = [*([BLANKED] if "blanked" in chosen else []), *invariance]
    scores = score_runs(target.runs, settings, conditions)
    if "features" in chosen:
        try:
            report.results.append(features_probe(scores, settings, f"{len(target.runs)} model(s)"))
        except DataError as err:
            report.notes.append(f"features probe not scored: {err}")
    if "blanked" in chosen:
        report.blanked = changes_table(scores, [BLANKED], settings)
    if invariance:
        report.invariance = changes_table(scores, invariance, settings)
    if report.other is not None:
        _compare(report, scores, conditions, settings)
    log.info("pooled %d test films (%s)", len(scores.frame), UNTOUCHED)
    return scores.frame


def _compare(report: AuditReport, scores: Scores, conditions: list[str], settings: ProbeSettings) -> None:
    """Score the compared runs under the same conditions and set each measure beside this one's."""
    other = score_runs(report.other.runs, settings, conditions)
    parts = []
    mine = [r for r in report.results if r.probe == "features"]
    if mine:
        try:
            theirs = features_probe(other, settings, f"{len(report.other.runs)} model(s), {report.names[1]}")
            parts.append(compare_features(mine[0], theirs, settings.n_boot, settings.seed))
        except DataError as err:
            report.notes.append(f"features probe of {report.names[1]} not scored: {err}")
    table, report.n_compared = compare_models(scores.frame, other.frame, conditions, settings.n_boot,
                                              settings.seed)
    report.comparison = pd.concat([*parts, table], ignore_index=True)


__all__ = ["AuditReport", "audit", "default_out"]
