"""The training panel: settings, Start/Cancel/Resume, live progress and curves, the log, the run
history.

Start launches the worker as its own process (app/worker_process.py); this panel only turns its
events into progress (app/run_progress.py: the phase from the moment Start is pressed, n of N and
the time left in each phase), curves (app/run_plots.py) and a status line (app/run_status.py: one
plain line, the technical record behind its Details button), and tells ProjectState when the run has
ended (`notify_run_finished`), so the history, the map and other views refresh. Resume continues
the selected cancelled or failed run from its checkpoint (`train --resume`, the same worker path).
When no run is going, the curves show the current run's stored metrics (the history's selection).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import worker_process
from app.project_state import ProjectState
from app.run_history import RunHistoryView
from app.run_plots import WAITING_HINT, RunCurves
from app.run_progress import RunProgress
from app.run_status import RunStatus, accuracy_phrase, error_phrase, run_phrase
from app.training_form import TrainingForm
from app.worker_process import WorkerOutcome, WorkerProcess
from core.encoders import EncoderError
from core.store.project import Project
from core.training.events import END_EVENTS, Event
from core.training.settings import TrainSettings

LOG_LINES = 5000


class TrainingPanel(QWidget):
    busy_changed = Signal(bool)

    def __init__(self, state: ProjectState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("trainingPanel")
        self.state = state
        self.worker = WorkerProcess(self)
        self.run_id: int | None = None  # the run launched from here, once it has started
        self.outcome: WorkerOutcome | None = None  # how the last launched run ended
        self._launched_in: Project | None = None  # the project the last run was launched in

        self.form = TrainingForm()
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("continue the selected cancelled or failed run from its checkpoint")
        self.resume_button.setVisible(False)
        self.run_status = RunStatus()
        self.status = self.run_status.line  # the plain line; run_status.details has the technical record
        self.run_progress = RunProgress()
        self.progress, self.eta = self.run_progress.bar, self.run_progress.eta
        self.curves_caption = QLabel()
        self.curves_caption.setObjectName("columnHeader")
        self.curves = RunCurves()
        self.history = RunHistoryView(state)
        self.log = QPlainTextEdit()
        self.log.setObjectName("workerLog")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.history, "Runs")
        self.tabs.addTab(self.log, "Log")
        self.tabs.setMinimumHeight(150)  # a few runs stay readable however tall the plots are

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.resume_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.run_progress)
        layout.addWidget(self.run_status)
        layout.addWidget(self.curves_caption)
        layout.addWidget(self.curves, 3)
        layout.addWidget(self.tabs, 2)

        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(lambda: self.resume(self.resume_target()))
        self.history.resume_requested.connect(self.resume)
        self.worker.event.connect(self.run_status.record)
        self.worker.event.connect(self._event)
        self.worker.log.connect(self.log.appendPlainText)
        self.worker.ended.connect(self._ended)
        state.project_changed.connect(self._project_changed)
        state.current_run_changed.connect(self._show_run)
        state.counts_changed.connect(self._update_form_counts)
        state.contents_changed.connect(self._update_form_counts)
        self._project_changed()

    @property
    def busy(self) -> bool:
        return self.worker.running

    # -- starting and stopping ----------------------------------------------------------------
    def start(self) -> bool:
        """Launch a run with the form's settings; False (and the reason shown) if it cannot start."""
        if self.busy:
            return False
        root = self.state.root
        if root is None:  # no project
            self._set_status("idle", "Open a project first.")
            return False
        settings = self.form.settings()
        try:
            settings.validate()
        except (ValueError, EncoderError) as exc:
            self._set_status("failed", f"Cannot start: {exc}")
            return False
        return self._launch(
            worker_process.worker_command(root, settings),
            f"Starting {run_phrase(settings.algorithm, settings.encoder, settings.mode, self.form.steps_text())}…",
        )

    def start_defaults(self) -> bool:
        """The default settings, whatever the form shows (the first model of a project)."""
        self.form.reset_to(TrainSettings())
        return self.start()

    def resume(self, run_id: int | None) -> bool:
        """Continue a cancelled or failed run from its checkpoint (the same worker, `--resume`)."""
        project, api = self.state.project, self.state.api
        if self.busy or project is None or api is None or run_id is None:
            return False
        if not api.runs.resumable(run_id):
            self._set_status(
                "failed", f"Run {run_id} cannot be resumed: only a cancelled or failed run with its checkpoint can."
            )
            return False
        return self._launch(worker_process.resume_command(project.root, run_id), f"Resuming run {run_id}…")

    def _launch(self, command: tuple[str, list[str]], status: str) -> bool:
        program, arguments = command
        self.run_id, self.outcome, self._launched_in = None, None, self.state.project
        self.curves.clear(WAITING_HINT)
        self.curves_caption.setText("Live curves of the run")
        self.log.clear()
        self.run_status.begin()
        self.run_progress.begin()
        self._set_status("running", status)
        self.worker.start(program, arguments)
        if self.worker.running:  # not when it failed to start at once (already reported)
            self._set_running(True)
        return True

    def cancel(self) -> None:
        if self.busy:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self._set_status("running", "Cancelling: the worker saves a checkpoint and stops…")

    def shutdown(self, timeout_ms: int = 15_000) -> None:
        """Closing the studio: cancel a running worker and wait for it (killed past the timeout)."""
        if self.busy:
            self.worker.cancel(kill_after_ms=timeout_ms)
            if not self.worker.wait(timeout_ms):
                self.worker._kill()
                self.worker.wait(5_000)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running and self.state.project is not None)
        self.cancel_button.setEnabled(running)
        self.form.setEnabled(not running)
        self._update_resume()
        self.busy_changed.emit(running)

    def resume_target(self) -> int | None:
        """The run Resume continues: the history's selection if it can be resumed, else the run
        launched from here last (a cancel leaves it selected nowhere)."""
        api = self.state.api
        if self.busy or api is None:
            return None
        launched = self.run_id if self._launched_in is self.state.project else None  # not another project's
        return next(
            (run for run in (self.state.current_run, launched) if run is not None and api.runs.resumable(run)), None
        )

    def _update_resume(self) -> None:
        run = self.resume_target()
        self.resume_button.setVisible(run is not None)
        if run is not None:
            self.resume_button.setText(f"Resume run {run}")

    # -- the worker's events -------------------------------------------------------------------
    def event_handlers(self) -> dict[Event, Callable[[dict], None]]:
        """What the panel does with each event a run sends (a test checks every one of
        core.training.events.RUN_EVENTS has its handler)."""
        return {
            Event.STARTED: self._on_started,
            Event.PHASE: self._on_phase,
            Event.PROGRESS: self._on_progress,
            Event.WARNING: self._on_warning,
            Event.METRICS: self._on_metrics,
            Event.MAP: self._on_map,
            Event.INFO: self._log_message,  # details for the log; the phase says where the run is
            **dict.fromkeys(END_EVENTS, self._on_end),
        }

    def _event(self, event: dict) -> None:
        handler = self.event_handlers().get(event["event"])
        if handler is not None:
            handler(event)

    def _on_started(self, event: dict) -> None:
        self.run_id = event.get("run")
        self._set_status("running", f"Run {self.run_id}: {self.run_status.phrase}")  # recorded just before

    def _on_phase(self, event: dict) -> None:
        self.run_progress.enter(str(event.get("phase", "")), str(event.get("message") or ""), event.get("eta_s"))
        if self.run_id is not None and not self.worker.cancelling and event.get("message"):
            self._set_status("running", f"Run {self.run_id}: {event['message']}")

    def _on_progress(self, event: dict) -> None:
        self.run_progress.count(
            str(event.get("phase", "training")),
            int(event.get("step", 0)),
            int(event.get("total") or 0),
            event.get("eta_s"),
        )

    def _on_warning(self, event: dict) -> None:
        self.log.appendPlainText(f"warning: {event.get('message', '')}")

    def _on_metrics(self, event: dict) -> None:
        self.curves.add_metrics(int(event.get("step", 0)), event.get("values") or {})

    def _on_map(self, event: dict) -> None:
        self._log_message(event)
        if not event.get("final") and event.get("run") is not None:
            self.state.notify_map_preview(int(event["run"]))

    def _log_message(self, event: dict) -> None:
        self.log.appendPlainText(str(event.get("message", "")))

    def _on_end(self, event: dict) -> None:
        self.log.appendPlainText(f"{event['event']}: {event.get('message') or event.get('error') or ''}".rstrip(": "))

    def _ended(self, outcome: WorkerOutcome) -> None:
        self.outcome = outcome
        run_id = outcome.run_id if outcome.run_id is not None else self.run_id
        self.run_id = run_id
        self.run_progress.finish(outcome.status)
        name = f"Run {run_id}" if run_id is not None else "The run"
        if outcome.status == Event.FINISHED:
            metrics = (self.worker.end_event or {}).get("metrics") or {}
            said = ", ".join(part for part in (self.run_status.phrase, accuracy_phrase(metrics)) if part)
            self._set_status("finished", f"{name} finished" + (f": {said}" if said else "."))
        elif outcome.status == Event.CANCELLED:
            if outcome.exit_code is None and run_id is not None and self.state.api is not None:
                self.state.api.runs.settle_cancelled(run_id)  # killed mid-cancel: not a failure
            self._set_status(
                "cancelled",
                f"{name} was cancelled: Resume continues it from its checkpoint.",
                f"from a terminal: python main.py train {self.state.root} --resume {run_id}",
            )
        else:
            self._set_status("failed", f"{name} failed: {error_phrase(outcome.error)}", outcome.error)
            self.log.appendPlainText(f"failed: {outcome.error}")
        self._set_running(False)
        self.state.notify_run_finished(run_id, finished=outcome.status == Event.FINISHED)
        self._update_resume()

    # -- showing -------------------------------------------------------------------------------
    def _set_status(self, state: str, text: str, details: str = "") -> None:
        self.run_status.set_status(state, text, details)

    def _update_form_counts(self) -> None:
        """The form's "auto" steps and its warnings follow the project's train faces."""
        api = self.state.api
        self.form.set_train_counts(api.faces.train_counts() if api is not None else None)

    def _project_changed(self) -> None:
        self.start_button.setEnabled(self.state.project is not None and not self.busy)
        self._update_form_counts()
        if not self.busy:
            self.outcome = None
            self.run_progress.reset()
            self._set_status(
                "idle",
                "Pick the settings and press Start: training runs in its own process, "
                "and its results (predictions, map, metrics) go into the project."
                if self.state.project is not None
                else "Open a project to train on it.",
            )

    def _show_run(self, run_id: int | None) -> None:
        """The current run's stored curves, unless a run from here is going (its live curves win)."""
        self._update_resume()
        if self.busy:
            return
        if run_id is None:
            self.curves.clear()
            self.curves_caption.setText("No run yet: its curves appear here")
            return
        self.curves.show_series(self.state.run_metrics(run_id))
        row = self.history.history.row_of(run_id)
        run = self.history.history.run(row) if row is not None else None
        self.curves_caption.setText(
            f"Curves of run {run_id}"
            + (f": {run_phrase(run.algorithm, run.encoder, run.mode, '')}, {run.status}" if run else "")
        )
