"""Which project the studio opens at start, and building the demo project on first start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from app.background import BackgroundJob
from app.settings import last_project
from core.ingest.demo import DemoSettings, ensure_demo_project
from core.paths import default_demo_project
from core.store.project import Project

PREPARING_TITLE = "Preparing the demo project (first start only)…"
PREPARING_DETAIL = "Drawing faces of the seven expressions and importing them."


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
    """Builds (or just opens) the demo project in a background thread. Where it builds (`builds`:
    a first start), the window shows PreparingPage meanwhile: in its own centre, not a box over it.

    Emits `ready(path)` on success, `failed(message)` otherwise."""

    ready = Signal(str)
    failed = Signal(str)

    def __init__(self, path: Path, parent: QObject | None = None, settings: DemoSettings = DemoSettings()):
        super().__init__(parent)
        self.path = Path(path)
        self.settings = settings
        self.builds = not Project.is_project(self.path)  # else it is only opened (quick)
        self.job: BackgroundJob | None = None

    def start(self) -> None:
        path, settings = self.path, self.settings

        def work(_report_progress):
            ensure_demo_project(path, settings).close()
            return str(path)

        self.job = BackgroundJob(work, self)
        self.job.succeeded.connect(self._succeeded)
        self.job.failed.connect(self._failed)
        self.job.start()

    def _succeeded(self, path: str) -> None:
        self.ready.emit(path)

    def _failed(self, exc: BaseException) -> None:
        self.failed.emit(f"The demo project could not be built in {self.path}: {exc}")


class PreparingPage(QWidget):
    """The window's centre while the demo project is built: what is happening and a busy bar."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("preparingPage")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.title = QLabel(PREPARING_TITLE)
        self.title.setObjectName("emptyHint")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail = QLabel(PREPARING_DETAIL)
        self.detail.setObjectName("columnHeader")
        self.detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy: the build reports no steps
        self.bar.setTextVisible(False)
        self.bar.setFixedWidth(320)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addStretch(1)
        layout.addWidget(self.title)
        layout.addWidget(self.detail)
        layout.addWidget(self.bar, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
