"""Give the shipped bundle (pepx-resnet-focal-cxr-real 1.0.0) its input gate, and measure it.

The bundle's run folder is not in the repository, so its split is drawn again exactly as `pepx train` drew it
(scripts/bundle-pepx-resnet-focal-cxr-real.yaml: balanced_split of cxr-real with the run's sizes and seed) -
on cxr-real *version 1* (`source != "rsna"`): version 2's 1,605 appended rsna rows change the draw. Two
checks prove it is the bundle's own split: its 300 test films are exactly those of
docs/results/bundle/predictions.csv, and the temperature fitted again on its validation films equals the
bundle's. Then, from the repository root:

    OMP_NUM_THREADS=1 python scripts/gate_bundle.py
        # = pepx gate fit BUNDLE --split runs/gate-bundle/split.csv --ood ../shared/data/cxr-ood --in-place
        #       --report docs/results/gate
        # the gate fitted on the 2,250 training films (+ 1,500 corrupted, + cxr-ood's dev part), thresholds
        # on the 300 validation films, measured on the 300 test films and cxr-ood's test part

About 6 CPU-minutes (4,000 forward passes at 160 px, then 1,900 for the test report); then
`python scripts/gate_lso.py` (leave-source-out) reuses the split.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from pepx.data import balanced_split, load_source, read_image, save_split
from pepx.evaluation.calibration import fit_temperature
from pepx.release.gate import fit_command
from pepx.serving.bundle import default_bundle_path, load_bundle
from pepx.serving.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "scripts" / "bundle-pepx-resnet-focal-cxr-real.yaml"
REFERENCE = ROOT / "docs" / "results" / "bundle" / "predictions.csv"
SPLIT = ROOT / "runs" / "gate-bundle" / "split.csv"
OOD = "../shared/data/cxr-ood"


def _key(path: str) -> str:
    return str(path).split("cxr-real/", 1)[1]


def bundle_split() -> Path:
    """The shipped bundle's split, drawn again and checked; written to runs/gate-bundle/split.csv."""
    cfg = yaml.safe_load(RECIPE.read_text())
    manifest = load_source(cfg["data"]).manifest
    version1 = manifest[manifest["source"] != "rsna"].reset_index(drop=True)
    split = balanced_split(version1, cfg["n_train"], cfg["n_test"], n_val=cfg["n_val"],
                           seed=cfg["split_seed"])
    test = sorted(map(_key, split.loc[split["split"] == "test", "path"]))
    if test != sorted(map(_key, pd.read_csv(REFERENCE)["path"])):
        sys.exit(f"the regenerated test split differs from {REFERENCE}: not the bundle's split")
    bundle = load_bundle(default_bundle_path())
    predictor = Predictor(bundle, device="cpu", gate=False)
    val = split[split["split"] == "val"]
    x = np.stack([predictor.preprocess(read_image(p)).numpy() for p in val["path"]])
    logits = np.concatenate([predictor.predict_logits(torch.from_numpy(x[i : i + 64]))
                             for i in range(0, len(x), 64)])
    y = np.array([bundle.classes.index(c) for c in val["label"]])
    refit = fit_temperature(logits, y)
    if abs(refit - bundle.temperature) > 1e-3:
        sys.exit(f"temperature on the regenerated validation split {refit:.5f} != the bundle's "
                 f"{bundle.temperature:.5f}: not the bundle's split")
    print(f"split checked: 300 test films as {REFERENCE.name}; validation temperature {refit:.5f} = bundle's "
          f"{bundle.temperature:.5f}")
    return save_split(split, SPLIT)


def main() -> None:
    lines = fit_command(str(default_bundle_path()), str(bundle_split()), in_place=True, ood=OOD,
                        report=str(ROOT / "docs" / "results" / "gate"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
