"""Suite-wide isolation: every test writes its cache (synthetic sets, decoded images) under a temp folder."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_pepx_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point $PEPX_CACHE at a session temp folder unless the caller chose one (tests may override it)."""
    old = os.environ.get("PEPX_CACHE")
    if old is None:
        os.environ["PEPX_CACHE"] = str(tmp_path_factory.mktemp("pepx_cache"))
    yield
    if old is None:
        os.environ.pop("PEPX_CACHE", None)
