"""The studio's persistent settings: an INI file in the studio home (see core.paths).

Keeping it there (not in the platform's registry/plist) puts all of the studio's own files in
one folder, and lets tests isolate settings simply by pointing FER_STUDIO_HOME at a temp folder.
FER_STUDIO_SETTINGS, when set, names the INI file directly.
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

from core.paths import studio_home
from core.store.project import Project

MAX_RECENT = 8
KEY_RECENT = "projects/recent"
KEY_LAST = "projects/last"
KEY_GEOMETRY = "window/geometry"
KEY_WINDOW_STATE = "window/state"
KEY_SPLITTER = "window/splitter"


def settings_file() -> Path:
    override = os.environ.get("FER_STUDIO_SETTINGS")
    return Path(override).expanduser() if override else studio_home() / "settings.ini"


def studio_settings() -> QSettings:
    path = settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)


def _as_list(value) -> list[str]:
    # INI files give back a str for a one-element list and None for an empty one.
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


def recent_projects(settings: QSettings | None = None) -> list[str]:
    """Recently opened projects, newest first, without the ones that no longer exist."""
    settings = settings or studio_settings()
    stored = _as_list(settings.value(KEY_RECENT))
    alive = [p for p in stored if Project.is_project(p)]
    if alive != stored:
        settings.setValue(KEY_RECENT, alive)
    return alive


def remember_project(path: str | os.PathLike, settings: QSettings | None = None) -> None:
    settings = settings or studio_settings()
    path = str(Path(path).expanduser().resolve())
    recent = [p for p in _as_list(settings.value(KEY_RECENT)) if p != path]
    settings.setValue(KEY_RECENT, [path, *recent][:MAX_RECENT])
    settings.setValue(KEY_LAST, path)
    settings.sync()


def last_project(settings: QSettings | None = None) -> str | None:
    settings = settings or studio_settings()
    value = settings.value(KEY_LAST)
    return str(value) if value else None
