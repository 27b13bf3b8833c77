"""Pieces shared by the reports of `pepx reproduce` (single split) and `pepx reproduce --cv`: durations,
versions, provenance and the statistics notes."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import lightning
import numpy
import pandas as pd
import torch
import torchmetrics

import pepx
from pepx import CLASSES
from pepx.experiments.profiles import Profile
from pepx.markdown import markdown_table


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
