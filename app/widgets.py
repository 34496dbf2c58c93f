"""Small reusable widgets and display helpers."""

from __future__ import annotations

from datetime import UTC, datetime

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QLabel


def empty_hint(margin: int = 24) -> QLabel:
    """The label a view shows instead of an empty panel: centred, wrapped, styled #emptyHint."""
    label = QLabel()
    label.setObjectName("emptyHint")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    label.setMargin(margin)
    return label


def dot_icon(color: str) -> QIcon:
    """A small filled circle of a class's colour, for combo boxes and lists."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(color))
    painter.drawEllipse(1, 1, 10, 10)
    painter.end()
    return QIcon(pixmap)


def local_time(moment: datetime | None) -> str:
    """A stored (UTC) time in local time: the hour today, the date and hour before."""
    if moment is None:
        return ""
    local = moment.astimezone()
    today = datetime.now(UTC).astimezone().date()
    return local.strftime("%H:%M" if local.date() == today else "%Y-%m-%d %H:%M")


class ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" rather than widening its parent;
    the full text is its tooltip when shortened."""

    def __init__(self, text: str = "", mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle):
        super().__init__()
        self._full = text
        self._mode = mode
        self.setText(text)

    def setText(self, text: str) -> None:
        self._full = text
        self._elide()
        self.updateGeometry()

    def full_text(self) -> str:
        return self._full

    def _margins(self) -> int:
        return self.width() - self.contentsRect().width()  # frame, margins and style sheet padding

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + self._margins() + 6, hint.height())

    def minimumSizeHint(self) -> QSize:
        return QSize(40 + self._margins(), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.contentsRect().width() - 4, 40)  # a little slack for glyph overhang
        shown = self.fontMetrics().elidedText(self._full, self._mode, width)
        super().setText(shown)
        self.setToolTip(self._full if shown != self._full else "")
