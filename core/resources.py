"""Locate files shipped in the repository's resources/ folder."""
from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"


def resource_path(name: str) -> Path:
    path = RESOURCES_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"resource file missing: {path}")
    return path
