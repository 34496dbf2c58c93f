"""The status bar's annotator field: the name every correction is recorded under.

It starts from the stored name (or the OS user, core.labeling.default_annotator) and changes
when the annotator edits it and presses Enter or leaves the field; LabelingController checks
the name and keeps it in the studio's settings.
"""
from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QWidget

from core.labeling import MAX_ANNOTATOR_LENGTH
from app.labeling_controller import LabelingController


class AnnotatorField(QWidget):
    def __init__(self, controller: LabelingController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.edit = QLineEdit(controller.annotator)
        self.edit.setObjectName("annotatorField")
        self.edit.setMaxLength(MAX_ANNOTATOR_LENGTH)
        self.edit.setFixedWidth(130)
        self.edit.setToolTip("who the corrections are recorded as (Enter to change); undo takes back this "
                             "annotator's steps")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(QLabel("Annotator"))
        layout.addWidget(self.edit)
        self.edit.editingFinished.connect(self._edited)
        controller.annotator_changed.connect(self.edit.setText)

    def _edited(self) -> None:
        if not self.controller.set_annotator(self.edit.text()):
            self.edit.setText(self.controller.annotator)
