"""Features computed in the background after an import, so the first training does not wait.

`FeatureJob` runs `main.py features PROJECT --events json` as its own process (through
`WorkerProcess`, like a training) and says how far it is; `FeatureJobBar` shows that in the
status bar with a Cancel button, and hides itself when nothing is going. A training started
meanwhile shares the work: the cache's shards are claimed by whichever process gets to them
first (core/training/features.py, ShardClaims). Opening another project or quitting stops the
job; what it computed is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from app.project_state import ProjectState
from app.run_history import format_duration
from app.worker_process import REPO_ROOT, WorkerOutcome, WorkerProcess
from core.training.events import Event

DONE_SHOWN_MS = 8000  # how long the bar shows how the job ended before it hides


def features_command(project_root: str | Path) -> tuple[str, list[str]]:
    return sys.executable, [str(REPO_ROOT / "main.py"), "features", str(project_root), "--events", "json"]


class FeatureJob(QObject):
    changed = Signal()  # running, progress or the final text changed
    ended = Signal(object)  # WorkerOutcome

    def __init__(self, state: ProjectState, parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.worker = WorkerProcess(self)
        self.step, self.total, self.eta_s = 0, 0, None
        self.text = ""  # one short line for the status bar
        self.progress_text = ""  # inside the progress bar: n / N faces, time left
        self.detail = ""  # the job's own words, for a tooltip
        self._root: Path | None = None
        self.worker.event.connect(self._event)
        self.worker.ended.connect(self._ended)
        state.project_changed.connect(self._project_changed)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    @property
    def running(self) -> bool:
        return self.worker.running

    def start(self) -> bool:
        """Compute the open project's missing features; False when none is open or a job runs."""
        if self.running or self.state.root is None:
            return False
        self._root = Path(self.state.root)
        self.step, self.total, self.eta_s = 0, 0, None
        self.text = "Features: starting…"
        self.progress_text = ""
        self.detail = ""
        self.worker.start(*features_command(self._root))
        self.changed.emit()
        return True

    def cancel(self) -> None:
        if self.running:
            self.worker.cancel()
            self.text = "Stopping the feature computation (what is done is kept)…"
            self.changed.emit()

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        if self.running:
            self.worker.cancel(kill_after_ms=timeout_ms)
            if not self.worker.wait(timeout_ms):
                self.worker._kill()
                self.worker.wait(2_000)

    def _project_changed(self) -> None:
        if self.running and (self.state.root is None or Path(self.state.root) != self._root):
            self.cancel()  # the features of the project left behind; the rest is computed at its next run

    def _event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == Event.PROGRESS:
            self.step, self.total = int(event.get("step") or 0), int(event.get("total") or 0)
            self.eta_s = event.get("eta_s")
            left = f" · {format_duration(self.eta_s)} left" if self.eta_s is not None else ""
            self.text = "Features"
            self.progress_text = f"{self.step:,} / {self.total:,} faces{left}"
            self.changed.emit()
        elif kind == Event.FINISHED:
            computed, seconds = int(event.get("computed") or 0), float(event.get("seconds") or 0.0)
            self.text = "Features ready" + (f" ({computed:,} faces, {format_duration(seconds)})" if computed else "")
            self.detail = str(event.get("message", ""))
            self.changed.emit()

    def _ended(self, outcome: WorkerOutcome) -> None:
        if outcome.status == Event.FAILED:
            self.text = "Features failed (see the tooltip)"
            self.detail = outcome.error or "no reason given"
        elif outcome.status == Event.CANCELLED:
            self.text = "Features stopped: training computes the rest"
        self.changed.emit()
        self.ended.emit(outcome)


class FeatureJobBar(QWidget):
    """The job in a status bar: what it does, a progress bar and Cancel; hidden when idle."""

    def __init__(self, job: FeatureJob, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("featureJobBar")
        self.job = job
        self.label = QLabel()
        self.progress = QProgressBar()
        self.progress.setFixedWidth(190)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop computing features; what is done is kept")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel_button)
        self._hide_timer = QTimer(self)
        self._hide_timer.setSingleShot(True)
        self._hide_timer.timeout.connect(self._hide_if_idle)
        self.cancel_button.clicked.connect(job.cancel)
        job.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        job = self.job
        self.label.setText(job.text)
        self.label.setMinimumWidth(self.label.sizeHint().width())  # the elastic counts give way, not this
        self.label.setToolTip(
            job.detail
            or "Image features for head-mode training, computed after the import "
            "so the next run starts training at once"
        )
        self.cancel_button.setVisible(job.running)
        self.cancel_button.setEnabled(job.running and not job.worker.cancelling)
        self.progress.setVisible(job.running)
        self.progress.setRange(0, max(job.total, 1) if job.total else 0)  # busy until the first count
        self.progress.setValue(min(job.step, max(job.total, 1)))
        self.progress.setFormat(job.progress_text)
        if job.running:
            self._hide_timer.stop()
            self.setVisible(True)
        elif job.text:
            self.setVisible(True)
            self._hide_timer.start(DONE_SHOWN_MS)
        else:
            self.setVisible(False)

    def _hide_if_idle(self) -> None:
        if not self.job.running:
            self.setVisible(False)
