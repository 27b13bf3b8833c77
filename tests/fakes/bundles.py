"""Tiny bundles: an untrained PEPX-ResNet (width 0.25, 48 px) and the same with an input gate fitted on a
synthetic split."""

from __future__ import annotations

import pandas as pd
import torch

from pepx.data import balanced_split, load_source
from pepx.models import create_model
from pepx.serving.bundle import bundle_config, write_bundle
from pepx.serving.gate.build import fit_bundle_gate

SIZE = 48


def make_bundle(path, half=True, temperature=1.7, seed=0, operating_points=None, caveats=None):
    """(model, bundle): an untrained PEPX-ResNet (width 0.25, SIZE px, seeded) saved as a bundle at `path`."""
    torch.manual_seed(seed)
    model = create_model("pepx_resnet", width=0.25).eval()
    config = bundle_config("pepx_resnet", {"width": 0.25}, image_size=SIZE, bundle_id="tiny", version="0.0.1",
                           temperature=temperature, operating_points=operating_points)
    if caveats:
        config["caveats"] = caveats
    return model, write_bundle(model, path, config, card="# tiny\n", half=half)


def make_gated(root) -> tuple[pd.DataFrame, object]:
    """A tiny untrained bundle with a gate fitted on a synthetic split (20 / 10 / 10 films per class)."""
    manifest = load_source("synthetic:n_per_class=40,size=64").manifest
    split = balanced_split(manifest, 20, 10, n_val=10, seed=0)
    _, bundle = make_bundle(root / "plain")
    return split, fit_bundle_gate(bundle, split).save(root / "gated")
