"""Every modal question the window asks, behind one small object tests can replace.

`Dialogs` asks the user; tests pass an object with the same methods that answers at once
(see tests/test_app.py), so controllers never block on a modal dialog.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from core.ingest.importer import ImportReport
from core.labeling import MAX_ANNOTATOR_LENGTH, LabelingError, check_annotator
from core.store.models import SPLITS

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"  # the answers of Dialogs.ask_unsaved

SPLIT_HELP = {
    "train": "faces to learn from (labeled and unlabeled)",
    "val": "labeled faces to measure the model on while training",
    "test": "labeled faces kept aside for the final score",
}


class SplitDialog(QDialog):
    """Asks which split imported faces go into."""

    def __init__(self, source: str, parent: QWidget | None = None, default: str = "train"):
        super().__init__(parent)
        self.setWindowTitle("Import faces")
        layout = QVBoxLayout(self)
        intro = QLabel(f"Import <b>{source}</b><br>Which split do these faces belong to?")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.group = QButtonGroup(self)
        for split in SPLITS:
            button = QRadioButton(f"{split}  —  {SPLIT_HELP.get(split, '')}")
            button.setProperty("split", split)
            button.setChecked(split == default)
            self.group.addButton(button)
            layout.addWidget(button)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def split(self) -> str:
        checked = self.group.checkedButton()
        assert checked is not None, "the group is exclusive and starts with the default split checked"
        return checked.property("split")


class AnnotatorDialog(QDialog):
    """Asks for the name corrections are recorded under. Its OK button names the change
    ("Record as alice") and stays disabled until the name is a new, non-empty one."""

    def __init__(self, current: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Change annotator")
        self.current = current
        self.edit = QLineEdit(current)
        self.edit.setMaxLength(MAX_ANNOTATOR_LENGTH)
        self.edit.selectAll()
        self.hint = QLabel()
        self.hint.setTextFormat(Qt.TextFormat.PlainText)
        self.hint.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        intro = QLabel(f"Corrections are recorded as <b>{escape(current)}</b>. Record them from now on as:")
        intro.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(intro)
        layout.addWidget(self.edit)
        layout.addWidget(self.hint)
        layout.addWidget(self.buttons)
        self.edit.textChanged.connect(self._update)
        self._update()
        self.setMinimumWidth(420)

    def name(self) -> str:
        return self.edit.text().strip()

    def _update(self) -> None:
        name = self.name()
        try:
            check_annotator(name)  # the core's judgement; the box already stops at its length
            problem = ""
        except LabelingError as exc:
            problem = str(exc)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(not problem and name != self.current)
        ok.setText(f"Record as {name}".replace("&", "&&") if ok.isEnabled() else "Record")
        if problem:
            self.hint.setText(problem[:1].upper() + problem[1:] + ".")
        elif name == self.current:
            self.hint.setText("That is the current name.")
        else:
            self.hint.setText(f"Ctrl+Z will take back {name}'s steps, not {self.current}'s.")


def skipped_text(report: ImportReport) -> str:
    return "\n".join(f"{s.path}: {s.reason}" for s in report.skipped)


class ReportDialog(QDialog):
    def __init__(self, report: ImportReport, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import finished" if not report.cancelled else "Import cancelled")
        self.resize(760, 460 if report.skipped else 160)
        layout = QVBoxLayout(self)
        summary = QLabel(report.summary())
        summary.setWordWrap(True)
        summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(summary)
        if report.skipped:
            layout.addWidget(QLabel(f"Skipped files ({len(report.skipped):,}) and why:"))
            text = QPlainTextEdit(skipped_text(report))
            text.setReadOnly(True)
            text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
            text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            layout.addWidget(text, 1)
        else:
            layout.addStretch(1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.accept)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)


def choice_box(parent: QWidget | None, title: str, message: str, choices: list[str]) -> tuple[QMessageBox, list]:
    """A question with one button per choice and Cancel; the first choice is the default (Enter),
    Esc cancels. Built apart from Dialogs.choose so that it can be looked at without running it."""
    box = QMessageBox(QMessageBox.Icon.Question, title, message, QMessageBox.StandardButton.NoButton, parent)
    buttons = [
        box.addButton(text, QMessageBox.ButtonRole.AcceptRole if i == 0 else QMessageBox.ButtonRole.ActionRole)
        for i, text in enumerate(choices)
    ]
    box.setEscapeButton(box.addButton(QMessageBox.StandardButton.Cancel))
    box.setDefaultButton(buttons[0])
    return box, buttons


class Dialogs:
    """The real, modal implementations."""

    def __init__(self, parent: QWidget | None = None):
        self.parent = parent

    def error(self, title: str, message: str) -> None:
        QMessageBox.warning(self.parent, title, message)

    def confirm(self, title: str, message: str) -> bool:
        answer = QMessageBox.question(
            self.parent,
            title,
            message,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def choose(self, title: str, message: str, choices: list[str]) -> int | None:
        """The index of the choice the user took (Enter: the first), or None for Cancel/Esc."""
        box, buttons = choice_box(self.parent, title, message, choices)
        box.exec()
        return buttons.index(box.clickedButton()) if box.clickedButton() in buttons else None

    def ask_annotator(self, current: str) -> str | None:
        """A new annotator name, or None when the annotator keeps `current`."""
        dialog = AnnotatorDialog(current, self.parent)
        return dialog.name() if dialog.exec() == QDialog.DialogCode.Accepted else None

    def ask_unsaved(self, title: str, message: str) -> str:
        """SAVE, DISCARD or CANCEL the unsaved changes `message` describes; Enter saves, Esc cancels."""
        buttons = (
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel
        )
        answer = QMessageBox.warning(self.parent, title, message, buttons, QMessageBox.StandardButton.Save)
        answers = {QMessageBox.StandardButton.Save: SAVE, QMessageBox.StandardButton.Discard: DISCARD}
        return answers.get(answer, CANCEL)

    def choose_folder(self, title: str, start: str = "") -> str | None:
        return QFileDialog.getExistingDirectory(self.parent, title, start) or None

    def choose_file(self, title: str, name_filter: str, start: str = "") -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent, title, start, name_filter)
        return path or None

    def choose_save_file(self, title: str, name_filter: str, start: str = "") -> str | None:
        """A file name to write (the dialog asks before replacing an existing file), or None."""
        path, _ = QFileDialog.getSaveFileName(self.parent, title, start, name_filter)
        return path or None

    def choose_split(self, source: str) -> str | None:
        dialog = SplitDialog(source, self.parent)
        return dialog.split() if dialog.exec() == QDialog.DialogCode.Accepted else None

    def show_report(self, report: ImportReport) -> None:
        ReportDialog(report, self.parent).exec()
