"""`run_app`: start the studio on a project, the last one, or the demo project."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.error_hook import ErrorHook
from app.main_window import APP_TITLE, MainWindow
from app.settings import studio_settings
from app.startup import resolve_startup_project
from app.style import BASE_FONT_PX, STYLE_SHEET, dark_palette
from core.ingest.demo import DemoSettings


def application() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName(APP_TITLE)
        app.setOrganizationName("fer-studio")
    assert isinstance(app, QApplication), "the studio needs a QApplication, not a QCoreApplication"
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    font = app.font()
    font.setPixelSize(BASE_FONT_PX)
    app.setFont(font)
    app.setStyleSheet(STYLE_SHEET)
    return app


def start_studio(
    project: str | None, dialogs=None, demo_settings: DemoSettings = DemoSettings(), train_first_model: bool = False
) -> MainWindow:
    """Create and show the main window; open `project`, the last project or the demo (built in
    the background on first start). Returns at once; the demo opens when ready.
    `train_first_model`: on the first start (the demo is built now) train a model on it at once."""
    application()
    settings = studio_settings()
    window = MainWindow(dialogs=dialogs, settings=settings)
    window.show()
    choice = resolve_startup_project(project, settings)
    if choice.is_demo:
        # After the first paint, so the window is on screen while the demo is built.
        first = train_first_model and choice.needs_build
        QTimer.singleShot(0, lambda: window.open_demo_project(demo_settings, choice.path, train_first_model=first))
    else:
        window.open_project(choice.path)
    return window


def run_app(project: str | None) -> int:
    app = application()
    window = start_studio(project, train_first_model=True)
    state = window.state  # the hook must not reach for the window once it is deleted below
    hook = ErrorHook(window.dialogs.error, lambda: state.root)
    hook.install()
    try:
        code = app.exec()
    finally:
        hook.uninstall()
    del window
    return code
