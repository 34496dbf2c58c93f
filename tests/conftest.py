"""Shared fixtures. Every test runs offline, offscreen, with the studio's home in a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The studio's warm worker (a torch process per window) runs only where a test turns it on
# (tests/test_app_live_refit.py).
os.environ.setdefault("FER_STUDIO_LIVE_REFIT", "0")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Keep the user's real settings and demo project untouched."""
    home = tmp_path_factory.mktemp("studio-home")
    monkeypatch.setenv("FER_STUDIO_HOME", str(home))
    return home


@pytest.fixture
def project(tmp_path):
    from core.store.project import Project

    proj = Project.create(tmp_path / "proj")
    yield proj
    proj.close()
