"""The keyboard help: a card over the dimmed window listing every key of the studio.

Shown with ? or F1 (Help ▸ Keyboard shortcuts); any key or click hides it again and gives the
keyboard back to the widget that had it (else to `fallback_focus()`, the active grid), so the
next label key labels a face. Its sections are read when it opens from what makes the keys work:
the face grids' keys from the labeling controller's table its key filter dispatches by, the
window's from the live shortcuts of the menu bar's actions (`menu_key_rows`), so the card can
neither list a key that does nothing nor miss one that does something.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QAction, QColor, QFont, QFontMetrics, QKeySequence, QPainter
from PySide6.QtWidgets import QApplication, QMenu, QMenuBar, QWidget
from shiboken6 import isValid

PADDING = 28
ROW_GAP = 9
KEY_GAP = 22
COLUMN_GAP = 40  # between the sections, laid side by side
SECTION_GAP = 26  # a section's title above its rows
TITLE = "Keyboard shortcuts"
FOOTER = "Every label is saved at once · press any key or click to close"


KeyRow = tuple[str, str]  # (the keys as shown, what they do)
KeySection = tuple[str, list[KeyRow]]  # (title, rows)


def shortcut_actions(menu_bar: QMenuBar) -> list[QAction]:
    """The actions with a key, in menu order (submenus included)."""
    found: list[QAction] = []

    def walk(actions: list[QAction]) -> None:
        for action in actions:
            menu = action.menu()
            if isinstance(menu, QMenu):
                walk(menu.actions())
            elif action.shortcuts():
                found.append(action)

    walk(menu_bar.actions())
    return found


def action_help(action: QAction) -> str:
    """What the help card says an action does: its status tip, else its menu text ('&Open
    project…' -> 'open project')."""
    text = action.statusTip() or action.text().split("\t")[0].replace("&", "").rstrip("…").strip()
    return text[:1].lower() + text[1:]


def menu_key_rows(menu_bar: QMenuBar) -> list[KeyRow]:
    native = QKeySequence.SequenceFormat.NativeText
    return [
        (" / ".join(key.toString(native) for key in action.shortcuts()), action_help(action))
        for action in shortcut_actions(menu_bar)
    ]


class ShortcutHelp(QWidget):
    def __init__(
        self,
        parent: QWidget,
        sections: Callable[[], list[KeySection]],
        fallback_focus: Callable[[], QWidget | None] = lambda: None,
    ):
        super().__init__(parent)
        self.setObjectName("shortcutHelp")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.fallback_focus = fallback_focus
        self.focus_before: QWidget | None = None
        self.read_sections = sections
        self.sections: list[KeySection] = []
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
            self.sections = self.read_sections()  # read now: the keys as they are
            parent = self.parentWidget()
            assert parent is not None, "the card is made on the window it covers"
            self.setGeometry(parent.rect())
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
        parent = self.parentWidget()
        if parent is not None and watched is parent and event.type() == QEvent.Type.Resize and self.isVisible():
            self.setGeometry(parent.rect())
        return False

    def keyPressEvent(self, event) -> None:
        self.close_help()
        event.accept()

    def mousePressEvent(self, event) -> None:
        self.close_help()
        event.accept()

    def _columns(self) -> list[tuple[KeySection, int, int]]:
        """Each section with the width of its keys' column and its own width."""
        keys, text = QFontMetrics(self.key_font), QFontMetrics(self.text_font)
        columns = []
        for title, rows in self.sections:
            key_width = max((keys.horizontalAdvance(k) for k, _ in rows), default=0) + 16
            text_width = max((text.horizontalAdvance(t) for _, t in rows), default=0)
            width = max(key_width + KEY_GAP + text_width, keys.horizontalAdvance(title))
            columns.append(((title, rows), key_width, width))
        return columns

    def _section_height(self, rows: int) -> int:
        return SECTION_GAP + rows * (QFontMetrics(self.key_font).height() + 6 + ROW_GAP)

    def _layout(self) -> tuple[QSize, list[tuple[KeySection, int, int, QPoint]]]:
        """The card's size and each section with its key column's width, its width and its place
        in the card: side by side, or one above the other where a narrow window has no room
        for that but the height to spare."""
        columns = self._columns()
        least = max(
            QFontMetrics(self.title_font).horizontalAdvance(TITLE),
            QFontMetrics(self.small_font).horizontalAdvance(FOOTER),
        )
        wide = QSize(
            max(sum(width for _, _, width in columns) + COLUMN_GAP * max(len(columns) - 1, 0), least) + 2 * PADDING,
            2 * PADDING + 34 + max((self._section_height(len(rows)) for (_, rows), _, _ in columns), default=0) + 18,
        )
        tall = QSize(
            max([least] + [width for _, _, width in columns]) + 2 * PADDING,
            2 * PADDING + 34 + sum(self._section_height(len(rows)) + ROW_GAP for (_, rows), _, _ in columns) + 18,
        )
        stacked = wide.width() > self.width() and tall.height() <= self.height()
        places, x, y = [], PADDING, PADDING + 34
        for (section, rows), key_width, width in columns:
            places.append(((section, rows), key_width, width, QPoint(x, y)))
            if stacked:
                y += self._section_height(len(rows)) + ROW_GAP
            else:
                x += width + COLUMN_GAP
        return (tall if stacked else wide), places

    def card_size(self) -> QSize:
        return self._layout()[0]

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
        for (title, rows), key_width, width, place in self._layout()[1]:
            self._paint_section(painter, title, rows, card.x() + place.x(), card.y() + place.y(), key_width, width)
        painter.setFont(self.small_font)
        painter.setPen(QColor("#8b94a3"))
        painter.drawText(
            QRect(card.x() + PADDING, card.bottom() - PADDING - 6, card.width() - 2 * PADDING, 20),
            Qt.AlignmentFlag.AlignVCenter,
            FOOTER,
        )
        painter.end()

    def _paint_section(
        self, painter: QPainter, title: str, rows: list[KeyRow], x: int, y: int, key_width: int, width: int
    ) -> None:
        keys = QFontMetrics(self.key_font)
        line = keys.height() + 6
        painter.setFont(self.key_font)
        painter.setPen(QColor("#8b94a3"))
        painter.drawText(QRect(x, y, width, line), Qt.AlignmentFlag.AlignVCenter, title)
        y += SECTION_GAP
        for key, text in rows:
            pill_width = keys.horizontalAdvance(key) + 16
            pill = QRectF(x + key_width - pill_width, y, pill_width, line)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#343a44"))
            painter.drawRoundedRect(pill, 5, 5)
            painter.setFont(self.key_font)
            painter.setPen(QColor("#e6e9ee"))
            painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, key)
            painter.setFont(self.text_font)
            painter.setPen(QColor("#c3c9d3"))
            painter.drawText(
                QRectF(x + key_width + KEY_GAP, y, width - key_width - KEY_GAP, line),
                Qt.AlignmentFlag.AlignVCenter,
                text,
            )
            y += line + ROW_GAP
