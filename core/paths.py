"""Where the studio keeps its own files (the demo project) when the user names no folder."""

from __future__ import annotations

import os
from pathlib import Path


def studio_home() -> Path:
    """FER_STUDIO_HOME if set, else $XDG_DATA_HOME/fer-studio, else ~/.local/share/fer-studio."""
    if os.environ.get("FER_STUDIO_HOME"):
        return Path(os.environ["FER_STUDIO_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fer-studio"


def default_demo_project() -> Path:
    return studio_home() / "demo-project"
