"""What a view shows instead of an empty panel: the reason in words (like widgets.empty_hint) and,
where one step fixes it, a button for that step (the review queue and the map without a finished
run: "Train a first model").
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QPushButton, QVBoxLayout, QWidget

from app.widgets import empty_hint


class EmptyState(QWidget):
    action_clicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("emptyState")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.label = empty_hint()
        self.button = QPushButton()
        self.button.setObjectName("emptyAction")
        self.button.setVisible(False)
        self.button.setMinimumHeight(34)
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.clicked.connect(self.action_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addStretch(1)
        layout.addWidget(self.label)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
        self.setStyleSheet(
            "#emptyState { background: #1b1e23; }#emptyAction { font-size: 14px; font-weight: 600; padding: 6px 18px; }"
        )

    def setText(self, text: str) -> None:
        self.label.setText(text)

    def text(self) -> str:
        return self.label.text()

    def set_action(self, text: str | None, enabled: bool = True) -> None:
        """Offer one step under the text (None: no button)."""
        self.button.setVisible(bool(text))
        if text:
            self.button.setText(text)
            self.button.setEnabled(enabled)
