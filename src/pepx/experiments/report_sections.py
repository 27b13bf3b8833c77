"""The sections that both reports write - `pepx reproduce` (single split, `pepx.experiments.reproduce`) and
`pepx reproduce --cv` (`pepx.experiments.report_cv`) - in the order a report shows them: the smoke-test note,
the headline, adults only, the shortcut warning, Tables 1-4, the figures, the headline's breakdowns, the
configuration and provenance, the statistics notes."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

import lightning
import numpy
import pandas as pd
import torch
import torchmetrics

import pepx
from pepx import CLASSES
from pepx.evaluation.adults import adults_markdown
from pepx.evaluation.breakdown import breakdown_sections
from pepx.evaluation.report import fmt_ci
from pepx.evaluation.stats import ALPHA
from pepx.experiments.comparisons import Cell, cell_label, headline_sentences
from pepx.experiments.paper import paper_value
from pepx.experiments.profiles import Profile
from pepx.experiments.tables import paper_terms_note
from pepx.markdown import markdown_table


def is_synthetic(data: str) -> bool:
    """Whether a data SOURCE is pepx's generated films (`synthetic`, `synthetic:...`)."""
    return data.split(":", 1)[0] == "synthetic"


def smoke_note(data: str, image_size: int) -> list[str]:
    """The report's first paragraph when its data are pepx's synthetic films (none otherwise)."""
    if not is_synthetic(data):
        return []
    return [f"> **A synthetic smoke test, not comparable with the paper.** These {image_size}-px films are "
            "drawn by pepx itself (`pepx.data.synthetic`: simulated lungs, ribs and lesions, no patient),"
            " so the numbers below only show that training, evaluation and this report run end to end. The "
            "paper's numbers beside them come from real chest X-rays: no conclusion about the networks, the "
            "losses or the paper can be drawn from the comparison. `pepx reproduce --profile cpu` runs the "
            "grid on real films.", ""]


def headline(summary: pd.DataFrame, ensemble: pd.DataFrame, head: Cell, head_eval: dict,
             comparable: bool = True) -> str:
    """The headline paragraph: one number - the headline cell's seed-ensemble accuracy, as in
    `headline/report.md` - with its definition, the mean over seeds it differs from, how many comparisons
    are significant, and what the tests can and cannot tell about it against the other networks."""
    seeds = summary[summary["metric"] == "accuracy"].set_index(["model", "loss"]).loc[head]
    acc = head_eval["metrics"].set_index("metric").loc["accuracy"]
    significant = ensemble[ensemble["verdict"] != "no significant difference"]
    found = ("; ".join(f"{r.a} > {r.b}" if r.diff > 0 else f"{r.b} > {r.a}" for r in significant.itertuples())
             if len(significant) else "no network or loss is shown to differ from another")
    paper = (f"paper, on its own data: {paper_value(1, head[0])}" if comparable else
             "the paper's number is not comparable with synthetic films")
    text = (f"**Headline: accuracy {fmt_ci(acc['value'], acc['low'], acc['high'])}** ({cell_label(head)}; "
            f"{paper}). Definition: the share of the {head_eval['n_images']} test images whose most probable "
            f"class, averaging the {int(seeds['n_seeds'])} seeds' probabilities per image (a seed ensemble), "
            "is their label; 95 % patient-bootstrap interval; details in [headline/report.md]"
            f"(headline/report.md). Table 1 gives instead the mean of the seeds' own accuracies, "
            f"{fmt_ci(seeds['mean'], seeds['low'], seeds['high'])}. {len(significant)} of {len(ensemble)} "
            f"paired comparisons are significant after Holm (α = {ALPHA}): {found}.")
    sentences = headline_sentences(ensemble, head) if not ensemble.empty else []
    return text + ("".join(f" {s}" for s in sentences))


def shortcut_warning(warnings: Sequence[str]) -> list[str]:
    if not warnings:
        return []
    return ["## Warning: the data let a shortcut through", "",
            "In these test images a source, an age group or a view on its own identifies a class, or goes "
            "with one (list below). A network can then score by recognising the hospital, scanner, view or "
            "the patient's age instead of the disease, and the tables measure that as much as pneumonia or "
            "COVID-19. Read them with the adults-only table and the per-source, per-age and per-view "
            "breakdowns further down.", "",
            *[f"- {w}" for w in warnings], ""]


def tables_section(tables: dict[int, str], ours: str) -> list[str]:
    lines = ["## Tables 1–4", "",
             f"Ours: {ours}. Paper: the published number for that network (the paper does not say which loss "
             "its rows used; one run, no interval).", ""]
    for k in sorted(tables):
        lines += [tables[k], ""]
    return lines + ["CSV: `table1.csv` … `table4.csv`, all metrics in `summary.csv`.", "",
                    f"<sub>{paper_terms_note()}</sub>", ""]


def figures_section(has_abc: bool) -> list[str]:
    lines = ["## Figures", "", "![Figure 9](figure9.png)", "", "![Figure 10](figure10.png)", ""]
    return lines + (["![A, B, C per block](figure_abc.png)", ""] if has_abc else [])


def breakdown_section(head: Cell, head_eval: dict) -> list[str]:
    lines = [f"## Breakdown of the headline model ({cell_label(head)})", "",
             "Full evaluation (confusion matrix, reliability diagram, ECE): [headline/report.md]"
             "(headline/report.md).", ""]
    return lines + breakdown_sections(head_eval["breakdowns"], heading="###")


def adults_section(head: Cell, head_eval: dict) -> list[str]:
    """The headline model's adults-only table (with its by-view table), beside the headline."""
    return adults_markdown(head_eval["adults"], heading="##", whose=cell_label(head))


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def versions() -> dict[str, str]:
    """Package versions, git commit and device of this process."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(pepx.__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"CPU, {os.cpu_count()} cores ({platform.machine()})")
    return {"pepx": pepx.__version__, "git": commit or "unknown", "python": platform.python_version(),
            "torch": torch.__version__, "lightning": lightning.__version__,
            "torchmetrics": torchmetrics.__version__, "numpy": numpy.__version__, "device": device,
            "platform": platform.platform()}


def split_markdown(split: pd.DataFrame) -> str:
    """Images per class and patients of each split."""
    counts = pd.crosstab(split["split"], split["label"]).reindex(columns=list(CLASSES), fill_value=0)
    counts["patients"] = split.groupby("split")["patient_id"].nunique()
    return markdown_table(counts, index=True)


def provenance(prof: Profile, timings: dict[str, float], total: float) -> list[str]:
    """The settings table, the wall time of every run and the versions."""
    runs = pd.DataFrame({"run": list(timings), "wall s": list(timings.values())})
    table = pd.DataFrame(list(versions().items()), columns=["package", "version"])
    settings = pd.DataFrame([(k, str(v)) for k, v in prof.to_dict().items()], columns=["setting", "value"])
    return ["## Configuration and provenance", "", markdown_table(settings), "",
            markdown_table(runs, digits=1), "",
            f"Sum of run wall times {duration(sum(timings.values()))} (all attempts); this call "
            f"{duration(total)}.", "", markdown_table(table), ""]


def statistics_notes(prof: Profile, unit: str = "seeds") -> list[str]:
    """How the intervals, tests and figures were computed."""
    return ["## Statistics", "",
            f"- CIs: percentile bootstrap, {prof.n_boot} resamples of test *patients* within each class (all "
            "images of a drawn patient move together), seed 0. With several seeds the CI is that of the "
            "seed-averaged metric: each resample is applied to every seed's predictions and averaged. The ± "
            "is the sd over seeds (training randomness); the CI is test-set sampling.",
            "- Paired tests: exact McNemar (binomial on discordant images, no continuity correction), run on "
            "the seed ensembles; with several seeds also seed k vs seed k, summarised per pair. Holm's "
            "correction over all comparisons in the table. Images of one patient are counted as independent "
            "pairs there; the A − B interval is a patient bootstrap.",
            "- \"80 % power for\": the smallest accuracy difference the exact test would detect in 80 % of "
            "fresh test sets of the same size and discordance, at the Bonferroni level α / (number of "
            "comparisons) that Holm asks of the first rejection (`pepx.evaluation.power`). A "
            "\"no significant difference\" rules out little below it.",
            f"- Figures: mean over {unit}, band = min–max over {unit}.", ""]
