"""The open project, shared by the window's widgets: one object, signals instead of wiring.

Widgets read from it and listen to `project_changed` (another project, or none),
`contents_changed` (same project, new or changed faces: after an import) and
`labels_changed(face ids)` (an annotator changed these faces' labels: views update those faces
in place, so the grid keeps its place and selection while the annotator works). Counts follow
`counts_changed`, which comes once corrections pause (COUNTS_DELAY_MS), not after every key.
Opening, closing and querying go through here; it knows nothing about widgets. Reads and label
changes go through `api` (core.studio_api.StudioApi): no widget opens a database session.

Runs: `current_run` is the training run whose results the views show (the newest finished run
with a map when a project opens; the run history's selection after that; a project's first run
as soon as its predictions are written, before its UMAP map), announced by
`current_run_changed(run_id or None)`. `run_finished(run_id)` says a run launched from the studio
has ended (finished, cancelled or failed), so views showing runs refresh. A live refit's run
replaces the current one in place (`notify_refit_finished`, `refreshing_in_place`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from core.run_data import RunMap, RunSummary
from core.store.project import Project
from core.store.queries import FaceRow
from core.studio_api import StudioApi

COUNTS_DELAY_MS = 300


@dataclass(frozen=True)
class FaceFilter:
    """Which faces the grid shows. None means: any."""

    split: str | None = None
    labeled: bool | None = None
    label: str | None = None


class ProjectState(QObject):
    project_changed = Signal()
    contents_changed = Signal()
    labels_changed = Signal(object)  # list of face ids
    counts_changed = Signal()
    current_run_changed = Signal(object)  # run id or None
    run_finished = Signal(int)  # run id
    map_preview = Signal(int)  # run id of a running run whose PCA map is written (UMAP follows)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.api: StudioApi | None = None  # the open project's queries and changes (None exactly when no project)
        self._previewed_run: int | None = None  # a running run made current at its PCA map
        self.current_run: int | None = None
        # True while views hear of a live refit replacing the current run (notify_refit_finished):
        # they then keep the annotator's place instead of starting over.
        self.refreshing_in_place = False
        self.changed_by_team = False  # True while labels_changed announces other annotators' changes
        self._stats: dict | None = None  # cached until the project or its contents change
        self._labeled_today: int | None = None
        # Counting 30,000 faces takes tens of milliseconds: once per pause in the labeling.
        self._counts_timer = QTimer(self)
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(COUNTS_DELAY_MS)
        self._counts_timer.timeout.connect(self.counts_changed)

    @property
    def root(self) -> Path | None:
        return self.project.root if self.project else None

    def open(self, path: str | os.PathLike) -> Project:
        """Open the project at `path` and make it current. Raises ProjectError; on error the
        current project stays open."""
        project = Project.open(path)
        self.set_project(project)
        return project

    def set_project(self, project: Project | None) -> None:
        old, self.project = self.project, project
        self.api = StudioApi(project) if project is not None else None
        self._previewed_run = None
        self._stats = self._labeled_today = None
        if old is not None and old is not project:
            old.close()
        self.current_run = None
        self.project_changed.emit()
        if self.api is not None:
            self.set_current_run(self.api.runs.to_show(), force=True)
        else:
            self.current_run_changed.emit(None)

    def close(self) -> None:
        if self.project is not None:
            self.set_project(None)

    def notify_contents_changed(self) -> None:
        self._stats = self._labeled_today = None
        self.contents_changed.emit()

    def notify_labels_changed(self, face_ids, by_team: bool = False) -> None:
        """Labels of these faces changed (a correction, an undo): counts and views follow.
        `by_team`: other annotators changed them (app/team_poller.py); `changed_by_team` says so
        while the signal is delivered."""
        self._stats = self._labeled_today = None
        self.changed_by_team = by_team
        try:
            self.labels_changed.emit([int(f) for f in face_ids])
        finally:
            self.changed_by_team = False
        self._counts_timer.start()

    # -- runs --------------------------------------------------------------------------------
    def set_current_run(self, run_id: int | None, force: bool = False) -> None:
        if run_id != self.current_run or force:
            self.current_run = run_id
            self.current_run_changed.emit(run_id)

    def notify_map_preview(self, run_id: int) -> None:
        """A running run's predictions and PCA map are written; its UMAP map follows. The map
        previews it; and where the project has no finished run to show (its first model), it
        becomes the current run now, so its review queue does not wait for the UMAP map."""
        if self.api is not None and self.current_run is None and not self.api.runs.has_finished_run():
            self._previewed_run = run_id
            self.set_current_run(run_id)
        self.map_preview.emit(run_id)  # after: the map says that the UMAP map is still coming

    def notify_run_finished(self, run_id: int | None, finished: bool) -> None:
        """A worker ended. A run whose process died without saying so is marked failed first;
        a run that finished becomes the current run, so the views show its results (a previewed
        run that did not finish gives way to the run a project opens with)."""
        if self.api is None:
            return
        self.api.runs.reap_dead()
        previewed, self._previewed_run = self._previewed_run, None
        if run_id is not None:
            self.run_finished.emit(run_id)
            if finished:
                self.set_current_run(run_id, force=True)
            elif run_id == previewed and self.current_run == run_id:
                self.set_current_run(self.api.runs.to_show())

    def notify_refit_finished(self, run_id: int, parent_id: int | None) -> bool:
        """A live refit of `parent_id` finished as run `run_id`. If the views still show the
        parent, the refit becomes the current run in place (`refreshing_in_place` is True while
        they hear of it: the face being labeled stays current, the map keeps its selection and
        zoom). False when another run was chosen meanwhile: the refit only joins the history."""
        if self.project is None:
            return False
        follow = self.current_run == parent_id
        self.refreshing_in_place = True
        try:  # current first: views start on the new run before they hear a run has finished
            if follow:
                self.set_current_run(run_id)
            self.run_finished.emit(run_id)
        finally:
            self.refreshing_in_place = False
        return follow

    # -- queries -----------------------------------------------------------------------------
    def stats(self) -> dict | None:
        if self.api is None:
            return None
        if self._stats is None:
            self._stats = self.api.faces.stats()
        return self._stats

    def labeled_today(self) -> int | None:
        """Faces annotators gave a label (a first one or another) since local midnight (cached
        like the stats)."""
        if self.api is None:
            return None
        if self._labeled_today is None:
            self._labeled_today = self.api.faces.labeled_today()
        return self._labeled_today

    def faces(self, face_filter: FaceFilter) -> list[FaceRow]:
        if self.api is None:
            return []
        return self.api.faces.list(split=face_filter.split, labeled=face_filter.labeled, label=face_filter.label)

    def runs(self) -> list[RunSummary]:
        if self.api is None:
            return []
        return self.api.runs.summaries()

    def run_metrics(self, run_id: int) -> dict:
        if self.api is None:
            return {}
        return self.api.runs.metrics(run_id)

    def run_map(self, run_id: int, method: str | None = None) -> RunMap | None:
        if self.api is None:
            return None
        return self.api.runs.map(run_id, method)

    def run_size(self, run_id: int) -> int:
        """How many faces the run predicted."""
        if self.api is None:
            return 0
        return self.api.runs.size(run_id)

    def labels_of(self, face_ids):
        """Current class index of each face (-1: unlabeled), as a numpy array."""
        if self.api is None:
            return None
        return self.api.faces.labels_of(face_ids)

    def faces_by_id(self, face_ids: list[int]) -> dict[int, FaceRow]:
        if self.api is None or not face_ids:
            return {}
        return self.api.faces.by_ids(face_ids)
