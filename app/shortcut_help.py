"""The keyboard help: a card over the dimmed window listing every key of the review flow.

Shown with ? or F1 (Help ▸ Keyboard shortcuts); any key or click hides it again and gives the
keyboard back to the widget that had it (else to `fallback_focus()`, the active grid), so the
next label key labels a face. The rows come from labeling_controller.key_help(), the same table
the keys are documented by, so the card cannot drift from what the keys do.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import QApplication, QWidget
from shiboken6 import isValid

from app.labeling_controller import key_help

PADDING = 28
ROW_GAP = 9
KEY_GAP = 22
TITLE = "Keyboard shortcuts"
FOOTER = "Every label is saved at once · press any key or click to close"


class ShortcutHelp(QWidget):
    def __init__(self, parent: QWidget, fallback_focus: Callable[[], QWidget | None] = lambda: None):
        super().__init__(parent)
        self.setObjectName("shortcutHelp")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.fallback_focus = fallback_focus
        self.focus_before: QWidget | None = None
        self.rows = key_help()
        self.key_font = QFont()
        self.key_font.setPixelSize(13)
        self.key_font.setBold(True)
        self.text_font = QFont()
        self.text_font.setPixelSize(13)
        self.title_font = QFont()
        self.title_font.setPixelSize(18)
        self.title_font.setBold(True)
        self.small_font = QFont()
        self.small_font.setPixelSize(11)
        parent.installEventFilter(self)
        self.hide()

    def toggle(self) -> None:
        if self.isVisible():
            self.close_help()
        else:
            self.focus_before = QApplication.focusWidget()
            self.setGeometry(self.parentWidget().rect())
            self.show()
            self.raise_()
            self.setFocus()

    def close_help(self) -> None:
        # Focus goes back before hiding: hidden while focused, the card would hand the focus on
        # along the tab chain to whatever widget follows it, and the next label key would land there.
        target = self._focus_target()
        if target is not None:
            target.setFocus(Qt.FocusReason.OtherFocusReason)
        self.hide()

    def _focus_target(self) -> QWidget | None:
        before = self.focus_before
        self.focus_before = None
        if before is not None and isValid(before) and before.isVisible() and before.isEnabled():
            return before
        return self.fallback_focus()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize and self.isVisible():
            self.setGeometry(self.parentWidget().rect())
        return False

    def keyPressEvent(self, event) -> None:
        self.close_help()
        event.accept()

    def mousePressEvent(self, event) -> None:
        self.close_help()
        event.accept()

    def card_size(self) -> QSize:
        keys = QFontMetrics(self.key_font)
        text = QFontMetrics(self.text_font)
        key_width = max(keys.horizontalAdvance(k) for k, _ in self.rows) + 16
        text_width = max(text.horizontalAdvance(t) for _, t in self.rows)
        width = (
            max(
                key_width + KEY_GAP + text_width,
                QFontMetrics(self.title_font).horizontalAdvance(TITLE),
                QFontMetrics(self.small_font).horizontalAdvance(FOOTER),
            )
            + 2 * PADDING
        )
        height = 2 * PADDING + 34 + len(self.rows) * (keys.height() + 6 + ROW_GAP) + 18
        return QSize(width, height)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor(10, 12, 15, 170))
        size = self.card_size().boundedTo(self.size())
        card = QRect(
            (self.width() - size.width()) // 2, (self.height() - size.height()) // 2, size.width(), size.height()
        )
        painter.setPen(QColor("#3d434d"))
        painter.setBrush(QColor("#23272e"))
        painter.drawRoundedRect(QRectF(card), 10, 10)
        painter.setFont(self.title_font)
        painter.setPen(QColor("#f1f3f6"))
        painter.drawText(
            QRect(card.x() + PADDING, card.y() + PADDING - 6, card.width(), 30), Qt.AlignmentFlag.AlignVCenter, TITLE
        )
        keys = QFontMetrics(self.key_font)
        key_width = max(keys.horizontalAdvance(k) for k, _ in self.rows) + 16
        y = card.y() + PADDING + 34
        line = keys.height() + 6
        for key, text in self.rows:
            pill_width = keys.horizontalAdvance(key) + 16
            pill = QRectF(card.x() + PADDING + key_width - pill_width, y, pill_width, line)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#343a44"))
            painter.drawRoundedRect(pill, 5, 5)
            painter.setFont(self.key_font)
            painter.setPen(QColor("#e6e9ee"))
            painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, key)
            painter.setFont(self.text_font)
            painter.setPen(QColor("#c3c9d3"))
            painter.drawText(
                QRectF(card.x() + PADDING + key_width + KEY_GAP, y, card.width(), line),
                Qt.AlignmentFlag.AlignVCenter,
                text,
            )
            y += line + ROW_GAP
        painter.setFont(self.small_font)
        painter.setPen(QColor("#8b94a3"))
        painter.drawText(
            QRect(card.x() + PADDING, card.bottom() - PADDING - 6, card.width() - 2 * PADDING, 20),
            Qt.AlignmentFlag.AlignVCenter,
            FOOTER,
        )
        painter.end()
