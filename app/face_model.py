"""A list model over the faces that match the current filter, with lazily loaded thumbnails.

Only data() for DecorationRole (asked by the view for the items it paints) starts a thumbnail
load, so a 30,000-face project costs one database query and nothing per hidden item.
"""

from __future__ import annotations

from enum import IntEnum

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPixmap

from app.project_state import FaceFilter, ProjectState
from app.thumbnail_loader import ThumbnailLoader
from core.classes import expression_classes
from core.store.queries import FaceRow

UNLABELED_COLOR = "#5c6370"


class FaceRole(IntEnum):
    ROW = Qt.ItemDataRole.UserRole + 1  # the FaceRow
    THUMB_STATE = Qt.ItemDataRole.UserRole + 2  # "loaded", "pending" or "error"
    LABEL_COLOR = Qt.ItemDataRole.UserRole + 3  # QColor of the label badge


class ThumbState:
    LOADED = "loaded"
    PENDING = "pending"
    ERROR = "error"


def class_colors() -> dict[str, QColor]:
    return {c.name: QColor(c.color) for c in expression_classes()}


def placeholder_pixmap(size: int, broken: bool = False) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor("#4a2a2e" if broken else "#3a3f47"))
    if broken:
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QColor("#ff5c5c"))
        font = QFont()
        font.setBold(True)
        font.setPixelSize(size // 2)
        painter.setFont(font)
        painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "!")
        painter.end()
    return pixmap


class FaceListModel(QAbstractListModel):
    def __init__(self, state: ProjectState, loader: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.loader = loader
        self.face_filter = FaceFilter()
        self.id_filter: frozenset[int] | None = None  # e.g. the faces selected on the embedding map
        self._rows: list[FaceRow] = []
        self._row_of: dict[int, int] | None = None  # face id -> row, built on first need
        self._colors = class_colors()
        self._pending_pixmap = placeholder_pixmap(loader.size)
        self._broken_pixmap = placeholder_pixmap(loader.size, broken=True)
        loader.loaded.connect(self._thumbnail_ready)
        loader.failed.connect(self._thumbnail_ready)
        state.project_changed.connect(self._project_changed)
        state.contents_changed.connect(self.reload)
        state.labels_changed.connect(self.refresh_faces)

    # -- filtering ---------------------------------------------------------------------------
    def set_filter(self, face_filter: FaceFilter) -> None:
        if face_filter != self.face_filter:
            self.face_filter = face_filter
            self.reload()

    def set_id_filter(self, face_ids) -> None:
        """Show only these faces (within the other filters); None shows every face again."""
        ids = None if face_ids is None else frozenset(int(i) for i in face_ids)
        if ids != self.id_filter:
            self.id_filter = ids
            self.reload()

    def reload(self) -> None:
        rows = self.state.faces(self.face_filter)
        if self.id_filter is not None:
            rows = [face for face in rows if face.id in self.id_filter]
        self.beginResetModel()
        self._rows = rows
        self._row_of = None
        self.endResetModel()

    def refresh_faces(self, face_ids) -> None:
        """Re-read these faces (their labels changed) and repaint their cells in place: the rows
        stay where they are (a face that no longer matches a label filter leaves at the next
        reload), so the current face and the selection survive a correction."""
        rows = [row for row in (self.row_of(int(f)) for f in face_ids) if row is not None]
        if not rows:
            return
        fresh = self.state.faces_by_id([self._rows[row].id for row in rows])  # read in chunks by the API
        for row in rows:
            face = fresh.get(self._rows[row].id)
            if face is not None:
                self._rows[row] = face
        for row in rows:
            index = self.index(row)
            self.dataChanged.emit(
                index,
                index,
                [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole, FaceRole.ROW, FaceRole.LABEL_COLOR],
            )

    def _project_changed(self) -> None:
        self.loader.set_project(self.state.project)
        self.id_filter = None  # face ids of another project mean nothing here
        self.reload()

    # -- access ------------------------------------------------------------------------------
    def face(self, row: int) -> FaceRow:
        return self._rows[row]

    def row_of(self, face_id: int) -> int | None:
        if self._row_of is None:
            self._row_of = {face.id: row for row, face in enumerate(self._rows)}
        return self._row_of.get(face_id)

    def thumb_state(self, row: int) -> str:
        face_id = self._rows[row].id
        if self.loader.cached(face_id) is not None:
            return ThumbState.LOADED
        return ThumbState.ERROR if self.loader.error(face_id) else ThumbState.PENDING

    # -- Qt model ----------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        face = self._rows[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            pixmap = self.loader.pixmap(face)
            if pixmap is not None:
                return pixmap
            return self._broken_pixmap if self.loader.error(face.id) else self._pending_pixmap
        if role == Qt.ItemDataRole.DisplayRole:
            return face.label or "unlabeled"
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(face)
        if role == FaceRole.ROW:
            return face
        if role == FaceRole.LABEL_COLOR:
            return self._colors.get(face.label, QColor(UNLABELED_COLOR)) if face.label else QColor(UNLABELED_COLOR)
        if role == FaceRole.THUMB_STATE:
            return self.thumb_state(index.row())
        return None

    def _tooltip(self, face: FaceRow) -> str:
        lines = [
            f"<b>{_escape(face.path)}</b>",
            f"split: {face.split}",
            f"label: {face.label or 'unlabeled'}" + (f" ({face.label_source})" if face.label_source else ""),
        ]
        if face.crop_path:
            lines.append(f"face crop: {_escape(face.crop_path)}")
        error = self.loader.error(face.id)
        if error:
            lines.append(f"<span style='color:#ff6b6b'>cannot show this image: {_escape(error)}</span>")
        return "<br>".join(lines)

    def _thumbnail_ready(self, face_id: int, *_error) -> None:
        row = self.row_of(face_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
