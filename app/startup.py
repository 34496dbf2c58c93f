"""Which project the studio opens at start, and building the demo project on first start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from app.background import BackgroundJob
from app.settings import last_project
from core.ingest.demo import DemoSettings, ensure_demo_project
from core.paths import default_demo_project
from core.store.project import Project


@dataclass(frozen=True)
class StartupChoice:
    path: Path
    is_demo: bool  # the default demo project (built in the background if not there yet)
    needs_build: bool


def resolve_startup_project(requested: str | None, settings=None) -> StartupChoice:
    """The project named on the command line; else the last one if it still exists; else the
    demo project in the studio home."""
    if requested:
        return StartupChoice(Path(requested).expanduser(), False, False)
    last = last_project(settings)
    demo = default_demo_project()
    if last and Project.is_project(last) and Path(last).resolve() != demo.resolve():
        return StartupChoice(Path(last), False, False)
    # The demo always goes through DemoBuilder: it opens a built one at once and finishes a
    # build that a first start left half done.
    return StartupChoice(demo, True, not Project.is_project(demo))


class DemoBuilder(QObject):
    """Builds (or just opens) the demo project in a background thread, with a busy dialog.

    Emits `ready(path)` on success, `failed(message)` otherwise."""

    ready = Signal(str)
    failed = Signal(str)

    def __init__(
        self,
        path: Path,
        parent: QWidget | None = None,
        settings: DemoSettings = DemoSettings(),
        show_progress: bool = True,
    ):
        super().__init__(parent)
        self.path = Path(path)
        self.settings = settings
        self.show_progress = show_progress
        self.dialog: QProgressDialog | None = None
        self.job: BackgroundJob | None = None

    def start(self) -> None:
        path, settings = self.path, self.settings

        def work(_report_progress):
            ensure_demo_project(path, settings).close()
            return str(path)

        self.job = BackgroundJob(work, self)
        self.job.succeeded.connect(self._succeeded)
        self.job.failed.connect(self._failed)
        if self.show_progress:
            self.dialog = QProgressDialog(
                "Preparing the demo project (first start only)…\n"
                "Drawing faces of the seven expressions and importing them.",
                None,
                0,
                0,
                self.parent(),
            )
            self.dialog.setWindowTitle("FER Studio")
            self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
            self.dialog.setMinimumDuration(0)
            self.dialog.setMinimumWidth(420)
            self.dialog.show()
        self.job.start()

    def _close_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None

    def _succeeded(self, path: str) -> None:
        self._close_dialog()
        self.ready.emit(path)

    def _failed(self, exc: BaseException) -> None:
        self._close_dialog()
        self.failed.emit(f"The demo project could not be built in {self.path}: {exc}")
