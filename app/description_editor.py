"""The class-description editor: the text level's descriptions of each expression, editable,
saved with the project, and applied to the current run's text level on request.

The project's copy is descriptions.json in the project folder (core.encoders.text; the copy it
replaces goes to descriptions-history/); training runs started afterwards use it. "Save and
re-score" also recomputes the current run's text level with the new wording
(core.training.rescore, in a background thread with progress), after which the queue, the
detail panel and the map show the new predictions. Closing it (Close, Esc, the window's close
button, closing the studio or opening another project) with unsaved edits asks whether to save
them, discard them or keep editing.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.background import BackgroundJob
from app.dialogs import DISCARD, SAVE
from app.project_state import ProjectState
from app.widgets import dot_icon
from core.classes import class_names, expression_classes
from core.encoders.text import (
    check_descriptions,
    descriptions_for_project,
    load_descriptions,
    project_descriptions_path,
    save_project_descriptions,
)
from core.store.project import Project

INTRO = (
    "The text level compares each face with these descriptions of its expression's facial actions: "
    "one description per line; a class's text anchor is the mean of its descriptions. They are saved "
    "with the project and used by every training run started afterwards. <b>Save and re-score</b> also "
    "recomputes the current run's text level with them now, without retraining."
)


def spoken_list(names: list[str]) -> str:
    """'fear', 'fear and anger', 'fear, anger and disgust'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class DescriptionEditor(QDialog):
    def __init__(self, state: ProjectState, dialogs, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Class descriptions (text level)")
        self.resize(820, 520)
        self.state = state
        self.dialogs = dialogs
        self.job: BackgroundJob | None = None
        self.last_result = None  # the last re-score's RescoreResult
        self.texts: dict[str, list[str]] = {}
        self.saved: dict[str, list[str]] = {}  # the project's own copy ({} while it has none)
        self.loaded: dict[str, list[str]] = {}  # what the editor held when opened or last saved
        self._shown: str | None = None

        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.source = QLabel()
        self.source.setObjectName("columnHeader")
        self.source.setWordWrap(True)
        self.classes = QListWidget()
        for cls in expression_classes():
            item = QListWidgetItem(dot_icon(cls.color), cls.name)
            item.setData(Qt.ItemDataRole.UserRole, cls.name)
            self.classes.addItem(item)
        self.classes.setMinimumWidth(150)
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText(
            "one description per line, e.g. raised eyebrows, wide-open eyes and a dropped jaw"
        )
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.classes)
        split.addWidget(self.editor)
        split.setStretchFactor(1, 1)
        split.setSizes([170, 630])
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()

        self.reset_button = QPushButton("Shipped descriptions")
        self.reset_button.setToolTip("put the descriptions that come with the studio in the editor (not saved yet)")
        self.close_button = QPushButton("Close")
        self.save_button = QPushButton("Save")
        self.rescore_button = QPushButton("Save and re-score")
        self.rescore_button.setDefault(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reset_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.rescore_button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.source)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)

        self.classes.currentRowChanged.connect(self._class_chosen)
        self.editor.textChanged.connect(self._edited)
        self.reset_button.clicked.connect(self.load_shipped)
        self.close_button.clicked.connect(self.close)
        self.save_button.clicked.connect(self.save)
        self.rescore_button.clicked.connect(self.save_and_rescore)
        self.load()

    def _project(self) -> Project:
        """The open project: the window opens the editor only on one, and closes it before another opens."""
        project = self.state.project
        assert project is not None, "the description editor is open without a project"
        return project

    # -- contents -------------------------------------------------------------------------------
    def load(self) -> None:
        """The project's descriptions (its own copy, else the shipped ones)."""
        project = self._project()
        try:
            descriptions, path = descriptions_for_project(project.root)
        except ValueError as exc:  # a damaged project copy: say so, start from the shipped ones
            self._set_status(
                f"The project's descriptions could not be read ({exc}); showing the shipped "
                f"ones instead. Saving replaces the damaged file (it is kept in "
                f"descriptions-history/).",
                error=True,
            )
            descriptions, path = load_descriptions(), None
        own = path is not None and path == project_descriptions_path(project.root)
        self.source.setText(
            f"From this project: {path}"
            if own
            else "The shipped descriptions (this project has no copy of its own yet)."
        )
        self.saved = {name: list(texts) for name, texts in descriptions.items()} if own else {}
        self._fill(descriptions)
        self.loaded = self.descriptions()
        self._update_buttons()

    def load_shipped(self) -> None:
        self._fill(load_descriptions())
        self._set_status("The shipped descriptions are in the editor; Save to use them in this project.")

    def _fill(self, descriptions: dict[str, list[str]]) -> None:
        self.texts = {name: list(descriptions[name]) for name in class_names()}
        self._shown = None
        row = max(self.classes.currentRow(), 0)
        self.classes.setCurrentRow(-1)
        self.classes.setCurrentRow(row)
        self._refresh_counts()

    def descriptions(self) -> dict[str, list[str]]:
        """What the editor holds, one description per non-empty line."""
        self._store_shown()
        return {name: list(texts) for name, texts in self.texts.items()}

    def set_descriptions(self, name: str, texts: list[str]) -> None:
        """Replace one class's descriptions (as typing them would)."""
        self.classes.setCurrentRow(class_names().index(name))
        self.editor.setPlainText("\n".join(texts))

    def _class_chosen(self, row: int) -> None:
        self._store_shown()
        if row < 0:
            return
        self._shown = class_names()[row]
        self.editor.blockSignals(True)
        self.editor.setPlainText("\n".join(self.texts.get(self._shown, [])))
        self.editor.blockSignals(False)

    def _store_shown(self) -> None:
        if self._shown is not None:
            self.texts[self._shown] = [line.strip() for line in self.editor.toPlainText().splitlines() if line.strip()]

    def _edited(self) -> None:
        self._store_shown()
        self._refresh_counts()
        self._update_buttons()

    def _refresh_counts(self) -> None:
        for row, name in enumerate(class_names()):
            count = len(self.texts.get(name, []))
            item = self.classes.item(row)
            item.setText(f"{name}  ({count})")
            item.setForeground(QColor("#ff6b6b") if count == 0 else QColor("#d8dde5"))

    def dirty(self) -> bool:
        """Save would change the project's copy (or write its first one)."""
        return self.descriptions() != self.saved

    def unsaved_classes(self) -> list[str]:
        """The classes whose descriptions were edited since the editor opened or last saved."""
        now = self.descriptions()
        return [name for name in class_names() if now.get(name) != self.loaded.get(name)]

    def _update_buttons(self) -> None:
        busy = self.job is not None
        run = self.state.current_run
        self.save_button.setEnabled(not busy and self.dirty())
        self.rescore_button.setEnabled(not busy and run is not None)
        self.rescore_button.setText(f"Save and re-score run {run}" if run is not None else "Save and re-score")
        self.rescore_button.setToolTip("" if run is not None else "there is no run to re-score: train one first")
        for widget in (self.reset_button, self.classes, self.editor, self.close_button):
            widget.setEnabled(not busy)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #ff6b6b;" if error else "")
        self.status.setText(text)

    # -- saving and re-scoring ------------------------------------------------------------------
    def save(self) -> bool:
        """Write the project's copy; False (and the reason shown) when a class has no description."""
        descriptions = self.descriptions()
        try:
            check_descriptions(descriptions, "Not saved")
            path = save_project_descriptions(self._project().root, descriptions)
        except (ValueError, OSError) as exc:
            message = str(exc)
            empty = [name for name, texts in descriptions.items() if not texts]
            if empty:
                self.classes.setCurrentRow(class_names().index(empty[0]))
                message = (
                    f"Not saved: {', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no "
                    f"description; every class needs at least one."
                )
            self._set_status(message, error=True)
            return False
        self.saved = self.loaded = descriptions
        self.source.setText(f"From this project: {path}")
        self._set_status("Saved. Training runs started from now on use these descriptions.")
        self._update_buttons()
        return True

    def save_and_rescore(self) -> None:
        run_id = self.state.current_run
        if run_id is None or self.job is not None or not self.save():
            return
        from core.training.rescore import rescore_text_level  # deferred: imports torch

        project, descriptions = self._project(), self.saved
        self.job = BackgroundJob(
            lambda report: rescore_text_level(
                project, run_id, descriptions, progress=lambda message, fraction: report((message, fraction))
            ),
            self,
        )
        self.job.progress.connect(self._progress)
        self.job.succeeded.connect(lambda result: self._rescored(run_id, result))
        self.job.failed.connect(self._rescore_failed)
        self.job.done.connect(self._job_done)
        self.progress.setValue(0)
        self.progress.show()
        self._set_status(f"Re-scoring run {run_id}'s text level…")
        self.job.start()
        self._update_buttons()

    @property
    def busy(self) -> bool:
        return self.job is not None

    def _progress(self, report) -> None:
        message, fraction = report
        self.progress.setValue(int(round(100 * fraction)))
        self._set_status(f"Re-scoring: {message}…")

    def _rescored(self, run_id: int, result) -> None:
        self.last_result = result
        self._set_status(
            f"Run {run_id} re-scored with these descriptions: {result.faces:,} faces, "
            f"{result.pseudo_labels_changed:,} of them now with another suggestion "
            f"({result.seconds:.1f} s)."
        )
        self.state.set_current_run(run_id, force=True)  # the queue, details and map reload the run

    def _rescore_failed(self, exc: BaseException) -> None:
        self._set_status(f"Not re-scored (the descriptions are saved): {exc}", error=True)

    def _job_done(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.deleteLater()
        self.progress.hide()
        self._update_buttons()

    def wait(self) -> None:
        if self.job is not None:
            self.job.wait()

    def reject(self) -> None:
        """Every way of closing ends here (Esc; Close and the window's button through
        QDialog.closeEvent, which keeps the dialog open when this does not hide it)."""
        if self.job is not None:  # the predictions are being rewritten: let that finish first
            self._set_status("Re-scoring is still running: close this window when it has finished.")
            return
        if self.settle_unsaved_edits():
            super().reject()

    def settle_unsaved_edits(self) -> bool:
        """True when closing loses nothing: no edits, or the annotator saved or discarded them."""
        unsaved = self.unsaved_classes()
        if not unsaved:
            return True
        answer = self.dialogs.ask_unsaved(
            "Unsaved class descriptions",
            f"The descriptions of {spoken_list(unsaved)} have changes that are not saved.\n\n"
            f"Save them with the project before closing?",
        )
        if answer == SAVE:
            return self.save()  # a failed save says why in the editor, which stays open
        return answer == DISCARD
