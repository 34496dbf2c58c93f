"""Save a screenshot of the main window on a project, once its visible thumbnails are loaded.

    QT_QPA_PLATFORM=offscreen python -m app.screenshot PROJECT OUT.png [--size 1280x800]

Used for docs/screenshots/; works headless. Settings go to a temp folder unless
FER_STUDIO_SETTINGS is set, so the user's window layout is not touched.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from PySide6.QtCore import QEventLoop, QTimer


def _wait(app, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if condition():
            return True
        time.sleep(0.01)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project")
    parser.add_argument("output")
    parser.add_argument("--size", default="1280x800")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    os.environ.setdefault("FER_STUDIO_SETTINGS", os.path.join(tempfile.mkdtemp(), "settings.ini"))

    from app.face_model import ThumbState
    from app.main import application
    from app.main_window import MainWindow

    app = application()
    window = MainWindow()
    window.resize(width, height)
    window.show()
    if not window.open_project(args.project):
        return 1
    model = window.model

    def visible_loaded() -> bool:
        grid = window.grid
        rows = [r for r in range(model.rowCount())
                if grid.visualRect(model.index(r)).intersects(grid.viewport().rect())]
        return bool(rows) and all(model.thumb_state(r) != ThumbState.PENDING for r in rows)

    QTimer.singleShot(0, window.grid.viewport().update)
    if not _wait(app, visible_loaded, 60):
        print("warning: not every visible thumbnail loaded in time", file=sys.stderr)
    window.grab().save(args.output)
    print(f"saved {args.output}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
