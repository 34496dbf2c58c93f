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


# The map's colouring (a key of app.map_colors.COLOR_MODES), kept across restarts.
KEY_MAP_COLOR = "map/color_mode"
# Where the file dialogs open: the folder last used for each kind, else the user's home (a dialog
# given no folder opens in the working directory, the program's folder when started from an icon).
KEY_IMPORT_FOLDER = "folders/import"
KEY_PROJECT_FOLDER = "folders/projects"


def start_folder(settings: QSettings, key: str) -> str:
    """The folder last remembered under `key` while it still exists, else the user's home."""
    value = settings.value(key)
    if value and Path(str(value)).is_dir():
        return str(value)
    return str(Path.home())


def remember_folder(settings: QSettings, key: str, chosen: str | os.PathLike) -> None:
    """Remember the folder holding what a dialog chose, for the next dialog of this kind: the next
    import then starts beside the last (train/ then val/), the next project beside the last."""
    settings.setValue(key, str(Path(chosen).expanduser().resolve().parent))


# Live refits (app/live_refit.py): every K corrections, or after a pause with at least one.
KEY_LIVE_REFIT = "live/enabled"
KEY_REFIT_EVERY = "live/refit_every"
KEY_REFIT_PAUSE = "live/refit_pause_s"


LIVE_REFIT_ENV = "FER_STUDIO_LIVE_REFIT"  # 0: off whatever the settings say (tests; no worker process)
OFF_WORDS = ("false", "0", "no", "off")


def live_refit_enabled(settings: QSettings) -> bool:
    if os.environ.get(LIVE_REFIT_ENV, "").strip().lower() in OFF_WORDS:
        return False
    return str(settings.value(KEY_LIVE_REFIT, "true")).lower() not in OFF_WORDS


def refit_policy(settings: QSettings):
    """The refit trigger from the settings; a value that is not a valid setting falls back to its
    default (and says so on stderr, naming the key and the settings file)."""
    from core.active.refit_policy import DEFAULT_EVERY, DEFAULT_PAUSE_S, RefitPolicy

    every, pause = settings.value(KEY_REFIT_EVERY, DEFAULT_EVERY), settings.value(KEY_REFIT_PAUSE, DEFAULT_PAUSE_S)
    try:
        # A settings file gives strings, a default or a value set in this session numbers: str() takes either.
        pause = None if str(pause).lower() in ("none", "off", "") else float(str(pause))
        return RefitPolicy(every=int(str(every)), pause_s=pause)
    except (TypeError, ValueError) as exc:
        import sys

        print(
            f"{settings_file()}: {KEY_REFIT_EVERY}={every!r}, {KEY_REFIT_PAUSE}={pause!r}: {exc}; "
            f"using every {DEFAULT_EVERY} corrections or a {DEFAULT_PAUSE_S:.0f} s pause",
            file=sys.stderr,
        )
        return RefitPolicy()
