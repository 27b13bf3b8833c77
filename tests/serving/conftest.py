"""Bundles the serving tests share, made once per test module that asks for them."""

from __future__ import annotations

import pytest

from fakes.bundles import make_bundle, make_gated
from pepx.data import save_split


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory):
    """The folder of a tiny untrained bundle (`fakes.bundles.make_bundle`'s defaults)."""
    folder = tmp_path_factory.mktemp("tiny") / "bundle"
    make_bundle(folder)
    return folder


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory):
    """(root, split, bundle): a tiny bundle with a gate fitted on a synthetic split; the gated bundle is
    saved in root / "gated", the split in root / "split.csv"."""
    root = tmp_path_factory.mktemp("gate")
    split, bundle = make_gated(root)
    save_split(split, root / "split.csv")
    return root, split, bundle
