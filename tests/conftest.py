"""Suite-wide isolation: every test writes its cache (synthetic sets, decoded images) under a temp folder.

Shared fakes live in `tests/fakes/` (plain modules the tests import); fixtures that several folders use are
here, those of one folder in that folder's `conftest.py` (`serving/conftest.py`: a tiny bundle, a gated one).
"""

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


@pytest.fixture
def pepx_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """This test's own cache ($PEPX_CACHE = tmp_path / "cache"): nothing another test decoded is reused."""
    monkeypatch.setenv("PEPX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
