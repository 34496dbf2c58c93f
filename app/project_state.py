"""The open project, shared by the window's widgets: one object, signals instead of wiring.

Widgets read from it and listen to `project_changed` (another project, or none) and
`contents_changed` (same project, new or changed faces: after an import, later after labeling).
Opening, closing and querying go through here; it knows nothing about widgets.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from core.store.project import Project
from core.store.queries import FaceRow, list_faces, project_stats


@dataclass(frozen=True)
class FaceFilter:
    """Which faces the grid shows. None means: any."""

    split: str | None = None
    labeled: bool | None = None
    label: str | None = None


class ProjectState(QObject):
    project_changed = Signal()
    contents_changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self._stats: dict | None = None  # cached until the project or its contents change

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
        self._stats = None
        if old is not None and old is not project:
            old.close()
        self.project_changed.emit()

    def close(self) -> None:
        if self.project is not None:
            self.set_project(None)

    def notify_contents_changed(self) -> None:
        self._stats = None
        self.contents_changed.emit()

    # -- queries -----------------------------------------------------------------------------
    def stats(self) -> dict | None:
        if self.project is None:
            return None
        if self._stats is None:
            with self.project.session() as session:
                self._stats = project_stats(session)
        return self._stats

    def faces(self, face_filter: FaceFilter) -> list[FaceRow]:
        if self.project is None:
            return []
        with self.project.session() as session:
            return list_faces(session, split=face_filter.split, labeled=face_filter.labeled,
                              label=face_filter.label)
