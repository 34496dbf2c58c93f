"""Live refits while the annotator labels: after every K corrections, or once they pause with at
least one correction pending (core/active/refit_policy.py; K and the pause are settings, see
app/settings.py), the warm worker refits the current run on the cached features with the current
labels. When the refit finishes it becomes the current run in place
(ProjectState.notify_refit_finished): the queue, the suggestions, the face details and the map's
colours refresh while the face being labeled stays current.

Corrections made while a refit runs count toward the next one. Refits wait while a training run
or a feature job of the studio uses the cores, and after a refit that failed they wait for the
next correction (a run that cannot be refitted is not asked again and again). Only this studio's
annotator's corrections count: other annotators' votes (app/team_poller.py) are in the labels
every refit reads, but their own studios refit for them. `status_text()`
is the status bar's indicator: "model: refitting… / refreshed 3 s ago (run 14, +20 labels)".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QSettings, QTimer, Signal

from app import settings as studio
from app.project_state import ProjectState
from app.warm_worker import GAVE_UP, READY, STARTING, WarmWorker
from core.active.refit_policy import RefitPolicy
from core.store.models import RUN_FAILED, RUN_FINISHED

TICK_MS = 1000  # the indicator's "N s ago" and a held refit's retry
REQUESTABLE = (STARTING, READY)  # a request waits in the worker while it starts


@dataclass
class Refit:
    request_id: int
    parent: int
    labels: int  # corrections this refit takes in
    asked_at: float


@dataclass(frozen=True)
class Refreshed:
    run: int
    labels: int
    at: float
    seconds: float  # from the request to the refreshed views


class LiveRefit(QObject):
    status_changed = Signal(str)
    refreshed = Signal(int)  # the refit's run, now the current run (the views have been told)

    def __init__(
        self,
        state: ProjectState,
        worker: WarmWorker,
        settings: QSettings,
        held_by: Callable[[], str | None] = lambda: None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.state = state
        self.worker = worker
        self.settings = settings
        self.held_by = held_by  # why refits must wait now (a training run ...), or None
        self.policy: RefitPolicy = studio.refit_policy(settings)
        self.enabled = studio.live_refit_enabled(settings)
        self.pending = 0  # corrections not yet in a refit
        self.last_change: float | None = None
        self.in_flight: Refit | None = None
        self.last: Refreshed | None = None
        self.problem = ""  # why the last refit did not refresh the views
        self._hold_until_change = False
        self._refused: int | None = None  # a run the worker would not refit (fine-tune mode ...)
        self._status = ""
        self._due = QTimer(self)
        self._due.setSingleShot(True)
        self._due.timeout.connect(self.consider)
        self._tick = QTimer(self)
        self._tick.setInterval(TICK_MS)
        self._tick.timeout.connect(self._on_tick)
        state.project_changed.connect(self._project_changed)
        state.labels_changed.connect(self._labels_changed)
        state.current_run_changed.connect(self._run_changed)
        worker.job_ended.connect(self._job_ended)
        worker.state_changed.connect(lambda _state: self._update_status())
        self._project_changed()

    # -- settings ------------------------------------------------------------------------------
    def set_enabled(self, enabled: bool) -> None:
        """Live refits on or off (kept in the settings). Off stops the worker (a refit under way
        is dropped, its corrections wait) and keeps counting; on may refit at once."""
        self.enabled = bool(enabled)
        self.settings.setValue(studio.KEY_LIVE_REFIT, "true" if enabled else "false")
        self.settings.sync()
        self._sync_worker()
        if enabled:
            self.problem, self._hold_until_change = "", False  # a fresh start
        self.consider()

    # -- what happens --------------------------------------------------------------------------
    def _project_changed(self) -> None:
        self.pending, self.last_change, self.in_flight, self.last = 0, None, None, None
        self.problem, self._hold_until_change = "", False
        self._due.stop()
        self._sync_worker()
        self._update_status()

    def _sync_worker(self) -> None:
        """The worker runs while a project is open (and live refits are on)."""
        root = self.state.root
        if root is None or not self.enabled or not self._folder_writable():
            self.worker.stop()
        else:
            self.worker.start(root)

    def _folder_writable(self) -> bool:
        """A refit saves its checkpoint in the project folder: none where this user may only read
        it (a shared project on a server; labels still go to the database)."""
        project = self.state.project
        return project is None or project.folder_writable

    def _run_changed(self, _run_id) -> None:
        if not self.state.refreshing_in_place:  # another run chosen: it may well be refittable
            self._refused = None
            self.consider()

    def _labels_changed(self, face_ids: list[int]) -> None:
        if self.state.changed_by_team:
            # Each studio refits for its own annotator's corrections (a refit reads everyone's
            # labels); counting the team's too, every open studio would refit on every vote.
            return
        self.pending += len(face_ids)
        self.last_change = time.monotonic()
        self._hold_until_change = False
        self.consider()

    def consider(self) -> None:
        """Refit now if the policy says so and nothing holds it; else look again when due."""
        self._due.stop()
        if not self.enabled or self.state.project is None or self._hold_until_change or not self._folder_writable():
            return self._update_status()
        since = time.monotonic() - self.last_change if self.last_change is not None else None
        decision = self.policy.decide(self.pending, since, running=self.in_flight is not None)
        if decision.refit:
            self._request()
        else:
            wait = self.policy.seconds_until_due(self.pending, since)
            if wait is not None and self.in_flight is None:
                self._due.start(int(wait * 1000) + 50)
        self._update_status()

    def _request(self) -> None:
        parent = self.state.current_run
        if parent is None or parent == self._refused:
            return  # the indicator says why
        if self.worker.state not in REQUESTABLE or self.held_by() is not None:
            return  # the indicator says why; the tick looks again
        request_id = self.worker.request("refit", run=parent)
        if request_id is None:
            return
        self.in_flight = Refit(request_id, parent, self.pending, time.monotonic())
        self.pending, self.problem = 0, ""

    def _job_ended(self, event: dict) -> None:
        refit = self.in_flight
        if refit is None or event.get("id") != refit.request_id:
            return
        self.in_flight = None
        run = event.get("run")
        if event.get("status") == RUN_FINISHED and run is not None:  # the idle event's: how its run ended
            if self.state.notify_refit_finished(run, refit.parent):
                now = time.monotonic()
                self.last = Refreshed(run, refit.labels, now, now - refit.asked_at)
                self.refreshed.emit(run)
            else:
                self.problem = f"refit {run} of run {refit.parent} kept in the history (another run is shown)"
        else:
            self.pending += refit.labels  # they still wait for a refit
            self.problem = f"the refit {event.get('status')}: {_first_sentence(event.get('error'))}"
            self._hold_until_change = True  # the next correction tries again, not the next tick
            if run is not None:
                self.state.notify_run_finished(run, finished=False)  # the history shows how it ended
            elif event.get("status") == RUN_FAILED:
                self._refused = refit.parent  # refused before a run existed: not this run again
        self.consider()

    def _on_tick(self) -> None:
        if self.pending and self.in_flight is None and not self._hold_until_change:
            self.consider()  # a refit held by a training run or a starting worker
        self._update_status()

    # -- the indicator -------------------------------------------------------------------------
    def status_text(self) -> str:
        if self.state.project is None:
            return ""
        if not self.enabled:
            return "model: live refits off"
        if not self._folder_writable():
            return "model: no live refits (the project folder is read-only for you)"
        if self.worker.state == GAVE_UP:
            return "model: worker stopped, live refits off"
        if self.in_flight is not None:
            return f"model: refitting… (+{self.in_flight.labels} labels)"
        if self.state.current_run is None:
            return "model: no run to refit yet"
        waiting = ""
        held = self.held_by() if self.pending else None
        if held:
            waiting = f" · waiting for {held}"
        elif self.worker.state == STARTING:  # opening the project, or back after a crash
            waiting = " · the worker is starting"
        parts = []
        if self.problem:
            parts.append(self.problem)
        elif self.last is not None:
            ago = time.monotonic() - self.last.at
            parts.append(f"refreshed {_ago(ago)} (run {self.last.run}, +{self.last.labels} labels)")
        if self.pending:
            parts.append(f"{self.pending} new")
        return "model: " + (" · ".join(parts) if parts else "up to date") + waiting

    def _update_status(self) -> None:
        text = self.status_text()
        ticking = bool(text) and (self.last is not None or self.pending > 0 or self.worker.state == STARTING)
        if ticking and not self._tick.isActive():
            self._tick.start()
        elif not ticking:
            self._tick.stop()
        if text != self._status:
            self._status = text
            self.status_changed.emit(text)


def _first_sentence(text: str | None, limit: int = 90) -> str:
    """The start of an error message, short enough for the status bar."""
    text = (text or "no reason given").strip().split("; ")[0].split("\n")[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ago(seconds: float) -> str:
    if seconds < 5:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"
