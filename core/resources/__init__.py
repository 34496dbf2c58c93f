"""The files the studio ships (classes, class descriptions, face models), in this package's folder:
found the same way in a checkout and in an installed wheel (package data)."""

from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    path = RESOURCES_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"resource file missing: {path}")
    return path
