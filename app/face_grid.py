"""The thumbnail grid: a QListView in icon mode painting each face and its label badge.

One delegate paints every cell (no per-item widgets) and all cells have one size, so the view
lays out 30,000 faces instantly and asks only for the items on screen.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QItemSelectionModel, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from app.face_model import FaceListModel, FaceRole

CELL_PADDING = 6
BADGE_HEIGHT = 18


def readable_text_color(background: QColor) -> QColor:
    luminance = 0.299 * background.red() + 0.587 * background.green() + 0.114 * background.blue()
    return QColor("#1b1e23") if luminance > 150 else QColor("#f4f5f7")


class FaceDelegate(QStyledItemDelegate):
    def __init__(self, thumb_size: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.thumb_size = thumb_size
        self.badge_font = QFont()
        self.badge_font.setPixelSize(11)

    def cell_size(self) -> QSize:
        return QSize(self.thumb_size + 2 * CELL_PADDING, self.thumb_size + BADGE_HEIGHT + 3 * CELL_PADDING)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return self.cell_size()

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        cell = option.rect.adjusted(2, 2, -2, -2)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hovered:
            painter.setPen(QPen(QColor("#6ea8fe"), 2) if selected else Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#2f3d52") if selected else QColor("#2b3038"))
            painter.drawRoundedRect(cell, 6, 6)

        size = self.thumb_size
        thumb = QRect(option.rect.x() + (option.rect.width() - size) // 2, option.rect.y() + CELL_PADDING, size, size)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if pixmap is not None:
            painter.drawPixmap(thumb, pixmap)

        label = index.data(Qt.ItemDataRole.DisplayRole)
        color = index.data(FaceRole.LABEL_COLOR)
        painter.setFont(self.badge_font)
        metrics = QFontMetrics(self.badge_font)
        text = metrics.elidedText(label, Qt.TextElideMode.ElideRight, size - 8)
        badge_width = min(size, metrics.horizontalAdvance(text) + 12)
        badge = QRect(
            option.rect.x() + (option.rect.width() - badge_width) // 2,
            thumb.bottom() + CELL_PADDING,
            badge_width,
            BADGE_HEIGHT,
        )
        face = index.data(FaceRole.ROW)
        if face is not None and face.label:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRoundedRect(badge, BADGE_HEIGHT / 2, BADGE_HEIGHT / 2)
            painter.setPen(readable_text_color(color))
        else:
            painter.setPen(QPen(QColor("#6b7280"), 1, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(badge.adjusted(0, 0, -1, -1), BADGE_HEIGHT / 2, BADGE_HEIGHT / 2)
            painter.setPen(QColor("#9aa3b2"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()


# Keys the grid answers itself (QListView's own): the help card lists them beside the review keys
# (tests/test_app_review.py presses each).
GRID_OWN_KEYS: tuple[tuple[str, str], ...] = (
    ("← → ↑ ↓", "move between faces"),
    ("Shift/Ctrl + click, Ctrl+A", "select several faces: the keys above act on all at once"),
)


class FaceGrid(QListView):
    """Icon-mode list of faces. `current_face_changed(face_row or None)` for the detail panel;
    `selected_ids_changed(list of face ids)` for views that mark the selection (the map)."""

    current_face_changed = Signal(object)
    selected_ids_changed = Signal(object)

    def __init__(self, model: FaceListModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("faceGrid")
        self.delegate = FaceDelegate(model.loader.size, self)
        self.setItemDelegate(self.delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setGridSize(self.delegate.cell_size() + QSize(4, 4))
        self.setSpacing(0)
        self.setMouseTracking(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        # Always on: a scroll bar that comes and goes would change the width the columns share.
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.verticalScrollBar().setSingleStep(24)
        self.setDragEnabled(False)
        self.setModel(model)
        self.selectionModel().currentChanged.connect(self._current_changed)
        self.selectionModel().selectionChanged.connect(self._selection_changed)
        model.modelReset.connect(self._selection_changed)  # a reset drops the selection silently

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            self._spread_columns()
        return super().viewportEvent(event)

    def _spread_columns(self) -> None:
        """Share the spare width among the columns, so the grid fills the view evenly."""
        cell = self.delegate.cell_size() + QSize(4, 4)
        width = self.viewport().width() - 4  # QListView wraps a row that ends exactly at the edge
        columns = max(1, width // cell.width())
        grid = QSize(max(cell.width(), width // columns), cell.height())
        if grid != self.gridSize():
            self.setGridSize(grid)

    def face_model(self) -> FaceListModel:
        model = self.model()
        assert isinstance(model, FaceListModel), "a face grid is made over a face list model"
        return model

    def select_row(self, row: int) -> bool:
        """Make `row` the current face, alone in the selection, scrolled into view."""
        index = self.model().index(row, 0)
        if not index.isValid():
            return False
        self.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.scrollTo(index)
        return True

    def current_face(self):
        """The current FaceRow, or None."""
        index = self.currentIndex()
        return index.data(FaceRole.ROW) if index.isValid() else None

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.current_face_changed.emit(current.data(FaceRole.ROW) if current.isValid() else None)

    def selected_ids(self) -> list[int]:
        model = self.face_model()
        return [model.face(index.row()).id for index in self.selectionModel().selectedIndexes()]

    def _selection_changed(self, *_args) -> None:
        self.selected_ids_changed.emit(self.selected_ids())
