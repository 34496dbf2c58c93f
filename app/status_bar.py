"""The window's status bar: standing text on the left (the project's counts) that a message replaces
for a while, both elided to their room with the whole text in a tooltip.

QStatusBar draws its own message unelided over the normal widgets and cuts it at the first
permanent one ("…surprise -> fea"), and a normal widget's width follows its text, so the permanent
widgets (the annotator field) moved whenever the counts changed. Here the left part asks for a
fixed width whatever it shows, and showMessage/clearMessage/currentMessage keep QStatusBar's
interface and its messageChanged signal but show the message in an eliding label. Qt's own path
for the actions' status tips (QMainWindow calls QStatusBar's C++ showMessage) is taken over by an
event filter on the window, so a menu's tips elide the same way.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer
from PySide6.QtGui import QStatusTipEvent
from PySide6.QtWidgets import QSizePolicy, QStackedWidget, QStatusBar, QWidget

from app.widgets import ElidedLabel

LEFT_WIDTH_HINT = 460  # px the counts or a message ask for; they get more when the window is wide
LEFT_MIN_WIDTH = 120


class _LeftArea(QStackedWidget):
    """Asks for the same room whatever its labels hold: the layout never follows the text."""

    def sizeHint(self) -> QSize:
        return QSize(LEFT_WIDTH_HINT, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(LEFT_MIN_WIDTH, super().minimumSizeHint().height())


class StudioStatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.info = ElidedLabel(mode=Qt.TextElideMode.ElideRight)  # the standing text
        self.info.setObjectName("statusInfo")
        self.message_label = ElidedLabel(mode=Qt.TextElideMode.ElideRight)
        self.message_label.setObjectName("statusMessage")
        self._left = _LeftArea()
        self._left.addWidget(self.info)
        self._left.addWidget(self.message_label)
        self._left.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.addWidget(self._left, 1)
        self._message = ""
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.clearMessage)
        if parent is not None:
            parent.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if isinstance(event, QStatusTipEvent) and watched is self.parent():
            self.showMessage(event.tip())  # until the next tip ("" when the pointer leaves the item)
            return True
        return super().eventFilter(watched, event)

    def showMessage(self, text: str, timeout: int | None = 0) -> None:
        """Show `text` in place of the standing text, for `timeout` ms (0: until the next message)."""
        self._timer.stop()
        if not text:
            self.clearMessage()
            return
        self._message = text
        self.message_label.setText(text)
        self._left.setCurrentWidget(self.message_label)
        if timeout:
            self._timer.start(timeout)
        self.messageChanged.emit(text)

    def clearMessage(self) -> None:
        self._timer.stop()
        if not self._message:
            return
        self._message = ""
        self.message_label.setText("")
        self._left.setCurrentWidget(self.info)
        self.messageChanged.emit("")

    def currentMessage(self) -> str:
        return self._message
