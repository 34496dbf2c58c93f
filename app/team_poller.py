"""Live updates for a team: the other annotators' votes appear within a few seconds.

Every POLL_MS, while a project is open, the studio asks it off the GUI thread what annotators
other than the one in the status bar logged, undid or redid since it last looked
(`StudioApi.team.activity`: two range queries on the corrections log's key, core/team/activity.py),
and announces those faces with `ProjectState.notify_labels_changed`, exactly as after the
annotator's own keys: the grids, the map's colours, the queue and the face details update in
place, and the status bar says who did what for a moment ("ben: 3 labels"). It works the same
for another studio window, a `main.py label` from a terminal, on SQLite or on a PostgreSQL server.

The first look after a project opens only takes stock. A read that fails (the server down, the
database busy) is said once in the status bar and tried again at the next tick. Nothing runs
while no project is open, and `shutdown` (closing the window) stops the timer and waits for a
read under way.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy.exc import SQLAlchemyError

from app.background import NewestJobRunner
from app.project_state import ProjectState
from core.store.errors import explain_storage_error
from core.team.activity import TeamActivity, TeamWatch

POLL_MS = 2500


class TeamPoller(QObject):
    message = Signal(str)  # for the status bar: who changed what, or why updates wait

    def __init__(
        self,
        state: ProjectState,
        annotator: Callable[[], str],
        interval_ms: int = POLL_MS,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.state = state
        self.annotator = annotator  # the name whose own changes are not news (the labeling controller's)
        self.watch: TeamWatch | None = None  # what was seen of the log (None: take stock first)
        self.failing = False  # the last read failed (said once)
        self.runner = NewestJobRunner(self)
        self.runner.succeeded.connect(self._answered)
        self.runner.failed.connect(self._failed)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)
        state.project_changed.connect(self._project_changed)
        self._project_changed()

    @property
    def active(self) -> bool:
        return self.timer.isActive()

    def _project_changed(self) -> None:
        self.watch, self.failing = None, False
        self.runner.cancel_pending()
        if self.state.project is None:
            self.timer.stop()
            return
        self.timer.start()
        self.poll()  # take stock now: what others do from here on is news

    def poll(self) -> None:
        """Ask for the others' changes since the last look (skipped while a read is under way)."""
        api, project = self.state.api, self.state.project
        if api is None or project is None or self.runner.busy:
            return
        watch, annotator = self.watch, self.annotator()
        self.runner.request(lambda _progress: api.team.activity(watch, annotator), project)

    def _answered(self, project, activity: TeamActivity) -> None:
        if project is not self.state.project:
            return  # another project opened meanwhile
        self.watch = activity.watch
        if self.failing:
            self.failing = False
            self.message.emit("Team updates resumed.")
        if activity:
            self.state.notify_labels_changed(activity.face_ids, by_team=True)
            self.message.emit(activity.describe())

    def _failed(self, project, exc: BaseException) -> None:
        if project is not self.state.project:
            return
        if not isinstance(exc, (SQLAlchemyError, OSError)):
            self.timer.stop()  # a bug: shown once by the studio's error hook, not every few seconds
            raise exc
        if not self.failing:
            self.failing = True
            problem = explain_storage_error(exc, self.state.root)
            said = problem.message if problem else str(exc)
            self.message.emit(f"Team updates wait: {said}. Trying again every {self.timer.interval() / 1000:g} s.")

    def shutdown(self) -> None:
        self.timer.stop()
        self.runner.wait()
