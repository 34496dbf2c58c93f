"""The status bar's annotator field: shows the name every correction is recorded under.

It starts from the stored name (or the OS user, core.labeling.default_annotator). The name is
shown on a button that never takes the keyboard focus, so no label key, Backspace or Tab can
reach it; it changes only through a question (clicking the button, or Review ▸ Change
annotator…) whose answer LabelingController checks and keeps in the studio's settings.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from app.labeling_controller import LabelingController

NAME_WIDTH = 160  # longer names are elided; the tooltip has the whole name


class AnnotatorField(QWidget):
    def __init__(self, controller: LabelingController, dialogs, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("annotatorField")
        self.controller = controller
        self.dialogs = dialogs
        self.button = QToolButton()
        self.button.setObjectName("annotatorName")
        self.button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.button.setAutoRaise(True)
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.setMaximumWidth(NAME_WIDTH)
        caption = QLabel("Annotator")
        caption.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(caption)
        layout.addWidget(self.button)
        self.button.clicked.connect(self.change)
        controller.annotator_changed.connect(self._show)
        self._show(controller.annotator)

    def name_text(self) -> str:
        """The name as the status bar shows it."""
        return self.button.text().replace("&&", "&")

    def change(self) -> None:
        """Ask for another name; a cancel keeps the current one, an empty one is refused (with a
        message in the status bar)."""
        name = self.dialogs.ask_annotator(self.controller.annotator)
        if name is not None:
            self.controller.set_annotator(name)

    def _show(self, name: str) -> None:
        metrics = self.button.fontMetrics()
        shown = metrics.elidedText(name, Qt.TextElideMode.ElideRight, NAME_WIDTH - 16)
        self.button.setText(shown.replace("&", "&&"))  # a lone & would mark a shortcut letter
        self.button.setToolTip(
            f"Corrections are recorded as {name}; Ctrl+Z takes back {name}'s steps.\nClick to change the annotator."
        )
