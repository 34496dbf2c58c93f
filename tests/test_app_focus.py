"""Keys go where the annotator means them to (issue 19): after the keyboard help closes, a label
key labels the face instead of editing the annotator's name; the name changes only through an
explicit, confirmed step; and the class-description editor never drops unsaved edits on Close.
Assertions read the database and the files on disk, not just the widgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget

from app.annotator_field import AnnotatorField
from core.encoders.text import load_descriptions, project_descriptions_path
from core.store.models import Label
from core.store.project import Project
from tests.studio_runs import make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

ANNOTATOR = "tester"
DISGUST_KEY = "3"  # core/resources/classes.json


class FocusDialogs(FakeDialogs):
    """Answers the annotator and unsaved-edits questions with what the test sets, and records them."""

    def __init__(self):
        super().__init__()
        self.annotator_answer: str | None = None
        self.annotator_asked: list[str] = []
        self.unsaved_answer = "cancel"
        self.unsaved_asked: list[str] = []

    def ask_annotator(self, current):
        self.annotator_asked.append(current)
        return self.annotator_answer

    def ask_unsaved(self, title, message):
        self.unsaved_asked.append(message)
        return self.unsaved_answer


@pytest.fixture(scope="module")
def focus_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("focus") / "demo")


@pytest.fixture
def root(focus_template, tmp_path) -> Path:
    return project_copy(focus_template, tmp_path)


@pytest.fixture
def dialogs():
    return FocusDialogs()


@pytest.fixture
def window(qtbot, root, dialogs):
    win = studio_window(qtbot, root, dialogs)
    win.labeling.set_annotator(ANNOTATOR)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win)
    win.grid.select_row(0)
    win.grid.setFocus()
    yield win
    dialogs.unsaved_answer = "discard"  # let the window close whatever a test left open
    win.close()


def label_of(root: Path, face_id: int) -> tuple[str, str] | None:
    with Project.open(root) as project, project.session() as session:
        row = session.get(Label, face_id)
        return None if row is None else (row.label, row.annotator)


def type_into_focus(qtbot, key) -> None:
    """A key press as the annotator makes it: to whatever widget has the focus."""
    focused = QApplication.focusWidget()
    assert focused is not None
    qtbot.keyClick(focused, key)


def in_annotator_field(window, widget: QWidget | None) -> bool:
    field = window.statusBar().findChild(AnnotatorField)
    return widget is not None and (widget is field or field.isAncestorOf(widget))


# -- the keyboard help ---------------------------------------------------------------------------------
@pytest.mark.parametrize("close_by", ["escape", "click", "f1"])
def test_a_label_key_after_closing_the_help_labels_the_face(qtbot, window, root, close_by):
    face = window.grid.current_face()
    type_into_focus(qtbot, Qt.Key.Key_Question)
    assert window.help_overlay.isVisible()
    if close_by == "escape":
        qtbot.keyClick(window.help_overlay, Qt.Key.Key_Escape)
    elif close_by == "click":
        qtbot.mouseClick(window.help_overlay, Qt.MouseButton.LeftButton)
    else:
        type_into_focus(qtbot, Qt.Key.Key_F1)
    assert not window.help_overlay.isVisible()
    assert QApplication.focusWidget() is window.grid  # where the annotator was before the help
    type_into_focus(qtbot, DISGUST_KEY)
    assert label_of(root, face.id) == ("disgust", ANNOTATOR)
    type_into_focus(qtbot, Qt.Key.Key_Backspace)  # clears the next face; never touches the name
    assert window.labeling.annotator == ANNOTATOR and window.settings.value("review/annotator") == ANNOTATOR


def test_the_help_gives_focus_back_to_whichever_widget_had_it(qtbot, window):
    combo = window.panel.split_combo
    combo.setFocus()
    type_into_focus(qtbot, Qt.Key.Key_F1)
    assert window.help_overlay.isVisible()
    qtbot.keyClick(window.help_overlay, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is combo


# -- the annotator's name ------------------------------------------------------------------------------
def test_tabbing_through_the_window_never_reaches_the_annotator_field(qtbot, window):
    for _ in range(80):  # more than the window's focusable widgets: the chain wraps round
        type_into_focus(qtbot, Qt.Key.Key_Tab)
        assert not in_annotator_field(window, QApplication.focusWidget())
    for widget in window.annotator_field.findChildren(QWidget):
        assert widget.focusPolicy() == Qt.FocusPolicy.NoFocus, widget


def test_the_status_bar_shows_who_is_labeling(window):
    assert ANNOTATOR in window.annotator_field.name_text()
    assert window.annotator_field.isVisible()


def test_a_changed_name_is_asked_for_and_then_recorded(qtbot, window, root, dialogs):
    first, second = window.grid.current_face().id, window.grid.model().face(1).id
    dialogs.annotator_answer = "  alice "
    qtbot.mouseClick(window.annotator_field.button, Qt.MouseButton.LeftButton)
    assert dialogs.annotator_asked == [ANNOTATOR]
    assert window.labeling.annotator == "alice" and "alice" in window.annotator_field.name_text()
    assert window.settings.value("review/annotator") == "alice"
    assert QApplication.focusWidget() is window.grid  # the change leaves the keys with the grid
    type_into_focus(qtbot, DISGUST_KEY)
    assert label_of(root, first) == ("disgust", "alice")
    dialogs.annotator_answer = "bob"
    window.change_annotator_action.trigger()  # Review ▸ Change annotator… asks the same way
    type_into_focus(qtbot, DISGUST_KEY)
    assert label_of(root, second) == ("disgust", "bob")


@pytest.mark.parametrize("answer", [None, "", "   ", "x" * 65])
def test_a_cancelled_or_empty_name_keeps_the_current_one(qtbot, window, dialogs, answer):
    dialogs.annotator_answer = answer
    window.annotator_field.change()
    assert dialogs.annotator_asked == [ANNOTATOR]
    assert window.labeling.annotator == ANNOTATOR and ANNOTATOR in window.annotator_field.name_text()
    assert window.settings.value("review/annotator") == ANNOTATOR
    if answer is not None:  # refused with the reason; a cancel needs none
        assert f"still labeling as {ANNOTATOR}" in window.statusBar().currentMessage()


# -- the class-description editor ----------------------------------------------------------------------
def open_editor(window):
    window.edit_descriptions()
    editor = window.description_editor
    assert editor.isVisible()
    return editor


EDITED_FEAR = ["eyes wide with terror"]


@pytest.mark.parametrize("close_by", ["button", "escape", "window"])
def test_closing_the_editor_with_unsaved_edits_asks_and_cancel_keeps_them(qtbot, window, root, dialogs, close_by):
    editor = open_editor(window)
    editor.set_descriptions("fear", EDITED_FEAR)
    dialogs.unsaved_answer = "cancel"
    if close_by == "button":
        qtbot.mouseClick(editor.close_button, Qt.MouseButton.LeftButton)
    elif close_by == "escape":
        qtbot.keyClick(editor.editor, Qt.Key.Key_Escape)
    else:
        editor.close()
    assert len(dialogs.unsaved_asked) == 1 and "fear" in dialogs.unsaved_asked[0]
    assert editor.isVisible() and editor.descriptions()["fear"] == EDITED_FEAR
    assert not project_descriptions_path(root).exists()


def test_save_on_close_writes_the_edits_and_discard_drops_them(qtbot, window, root, dialogs):
    editor = open_editor(window)
    editor.set_descriptions("fear", EDITED_FEAR)
    dialogs.unsaved_answer = "save"
    editor.close_button.click()
    assert not editor.isVisible()
    assert json.loads(project_descriptions_path(root).read_text())["fear"] == EDITED_FEAR

    editor = open_editor(window)
    assert editor.descriptions()["fear"] == EDITED_FEAR
    editor.set_descriptions("fear", ["something else"])
    dialogs.unsaved_answer = "discard"
    editor.close_button.click()
    assert not editor.isVisible()
    assert json.loads(project_descriptions_path(root).read_text())["fear"] == EDITED_FEAR
    assert open_editor(window).descriptions()["fear"] == EDITED_FEAR


def test_a_save_that_fails_keeps_the_editor_open(window, root, dialogs):
    editor = open_editor(window)
    editor.set_descriptions("fear", [])  # every class needs a description: not saved
    dialogs.unsaved_answer = "save"
    editor.close_button.click()
    assert editor.isVisible() and "fear" in editor.status.text()
    assert not project_descriptions_path(root).exists()


def test_closing_the_editor_without_edits_does_not_ask(window, dialogs):
    editor = open_editor(window)  # the project has no copy of its own: the shipped descriptions
    assert editor.descriptions() == load_descriptions()
    editor.set_descriptions("fear", EDITED_FEAR)
    editor.set_descriptions("fear", load_descriptions()["fear"])  # edited back: nothing to lose
    editor.close_button.click()
    assert not editor.isVisible() and dialogs.unsaved_asked == []


def test_closing_the_studio_asks_about_the_editors_unsaved_edits(qtbot, window, root, dialogs):
    editor = open_editor(window)
    editor.set_descriptions("fear", EDITED_FEAR)
    dialogs.unsaved_answer = "cancel"
    window.close()
    assert window.isVisible() and editor.isVisible() and len(dialogs.unsaved_asked) == 1
    dialogs.unsaved_answer = "save"
    window.close()
    assert not window.isVisible()
    assert json.loads(project_descriptions_path(root).read_text())["fear"] == EDITED_FEAR


def test_opening_another_project_settles_the_editors_edits_first(window, root, dialogs, focus_template, tmp_path):
    other = project_copy(focus_template, tmp_path / "other")
    editor = open_editor(window)
    editor.set_descriptions("fear", EDITED_FEAR)
    dialogs.unsaved_answer = "cancel"
    assert not window.open_project(other)
    assert window.state.root == root and editor.isVisible()
    dialogs.unsaved_answer = "save"
    assert window.open_project(other)
    assert json.loads(project_descriptions_path(root).read_text())["fear"] == EDITED_FEAR
    assert not project_descriptions_path(other).exists()  # saved into the project they were made for


def test_the_annotator_dialog_only_offers_a_new_non_empty_name(qtbot):
    from app.dialogs import AnnotatorDialog

    dialog = AnnotatorDialog(ANNOTATOR)
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert not ok.isEnabled() and "current name" in dialog.hint.text()  # unchanged: nothing to record
    dialog.edit.setText("  ")
    assert not ok.isEnabled() and "name is needed" in dialog.hint.text()
    dialog.edit.setText(" alice ")
    assert ok.isEnabled() and ok.text() == "Record as alice" and dialog.name() == "alice"
    assert "alice's steps" in dialog.hint.text()
