"""Importing a folder or CSV into the open project: ask the split, run in the background with a
cancellable progress dialog, show the report, tell the widgets the project changed; then compute
the new faces' features in the background (app/feature_job.py), so the next training starts at once."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from app.background import BackgroundJob
from app.feature_job import FeatureJob
from app.project_state import ProjectState
from core.ingest.importer import ImportOptions, ImportProgress, ImportReport, import_source
from core.ingest.sources import SourceError
from core.store.project import ProjectError

PHASE_TEXT = {"reading": "Reading and checking files", "writing": "Adding faces to the project"}
USER_ERRORS = (SourceError, ProjectError, ValueError)


def is_importable(path: str | Path) -> bool:
    """What drag-and-drop accepts: a folder, or a CSV/TSV manifest."""
    path = Path(path)
    return path.is_dir() or (path.is_file() and path.suffix.lower() in (".csv", ".tsv"))


class ImportController(QObject):
    busy_changed = Signal(bool)
    finished = Signal(object)  # ImportReport (also when cancelled)
    failed = Signal(str)

    def __init__(
        self,
        state: ProjectState,
        dialogs,
        parent: QWidget | None = None,
        show_progress: bool = True,
        compute_features: bool = True,
    ):
        super().__init__(parent)
        self.state = state
        self.dialogs = dialogs
        self.show_progress = show_progress
        self.compute_features = compute_features  # after an import that added faces
        self.features = FeatureJob(state, self)
        self.widget = parent
        self.job: BackgroundJob | None = None
        self.progress_dialog: QProgressDialog | None = None
        self._cancel = threading.Event()
        self.last_report: ImportReport | None = None
        self._outcome: ImportReport | BaseException | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def begin(self, source: str | Path) -> bool:
        """The interactive flow: ask for the split, then import. False when nothing started."""
        if not self._can_start():
            return False
        split = self.dialogs.choose_split(str(source))
        return bool(split) and self.start_import(source, split)

    def _can_start(self) -> bool:
        if self.state.project is None:
            self.dialogs.error("No project open", "Open or create a project before importing faces.")
            return False
        if self.busy:
            self.dialogs.error(
                "Import running", "Another import is still running; wait for it to finish or cancel it first."
            )
            return False
        return True

    def start_import(self, source: str | Path, split: str, options: ImportOptions | None = None) -> bool:
        """Start importing `source` into the open project in the background."""
        if not self._can_start():
            return False
        project = self.state.project
        options = options or ImportOptions()
        options.split = split
        self._cancel.clear()
        cancel = self._cancel

        def work(report_progress):
            return import_source(project, str(source), options, progress=report_progress, cancelled=cancel.is_set)

        self.job = BackgroundJob(work, self)
        self.job.progress.connect(self._on_progress)
        self.job.succeeded.connect(self._on_succeeded)
        self.job.failed.connect(self._on_failed)
        self.job.done.connect(self._on_done)
        if self.show_progress:
            self._open_progress_dialog(Path(source).name or str(source))
        self.busy_changed.emit(True)
        self.job.start()
        return True

    def cancel(self) -> None:
        self._cancel.set()
        if self.progress_dialog is not None:
            self.progress_dialog.setLabelText("Cancelling… (faces already written are kept)")

    def wait(self) -> None:
        if self.job is not None:
            self.job.wait()

    # -- progress ----------------------------------------------------------------------------
    def _open_progress_dialog(self, name: str) -> None:
        dialog = QProgressDialog(f"Importing {name}…", "Cancel", 0, 0, self.widget)
        dialog.setWindowTitle("Importing faces")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setMinimumWidth(420)
        dialog.canceled.connect(self.cancel)
        self.progress_dialog = dialog
        self._source_name = name

    def _on_progress(self, event: ImportProgress) -> None:
        dialog = self.progress_dialog
        if dialog is None or self._cancel.is_set():
            return
        if dialog.maximum() != event.total:
            dialog.setMaximum(event.total)
        dialog.setValue(event.done)
        dialog.setLabelText(
            f"Importing {self._source_name}\n{PHASE_TEXT.get(event.phase, event.phase)}: "
            f"{event.done:,} of {event.total:,}"
        )

    def _close_progress_dialog(self) -> None:
        if self.progress_dialog is not None:
            self.progress_dialog.canceled.disconnect(self.cancel)
            self.progress_dialog.close()
            self.progress_dialog.deleteLater()
            self.progress_dialog = None

    # -- outcome -----------------------------------------------------------------------------
    # The result is kept until the thread has ended, so that when `finished` or `failed` is
    # emitted the controller is idle again and a new import may start at once.
    def _on_succeeded(self, report: ImportReport) -> None:
        self._outcome = report

    def _on_failed(self, exc: BaseException) -> None:
        self._outcome = exc

    def _on_done(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.deleteLater()
        outcome, self._outcome = self._outcome, None
        self._close_progress_dialog()
        self.busy_changed.emit(False)
        # Faces written before an error or a cancel are kept: show them too.
        self.state.notify_contents_changed()
        if isinstance(outcome, ImportReport):
            self.last_report = outcome
            if outcome.imported and self.compute_features:
                self.features.start()  # before the report: it computes while the annotator reads
            self.dialogs.show_report(outcome)
            self.finished.emit(outcome)
            return
        if isinstance(outcome, USER_ERRORS):
            message = str(outcome)
        else:
            message = f"Unexpected error ({type(outcome).__name__}): {outcome}"
        self.dialogs.error("Import failed", message)
        self.failed.emit(message)
