"""Bulk steps in the studio, offscreen: the question above the confirm threshold says how many faces
are labeled and how many lie in val/test, its default (Enter) changes only unlabeled train faces;
smaller selections leave those faces out and say so; the context menu includes them on request;
a storage failure is put in plain words. Assertions read the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.bulk_scope import BULK_CONFIRM_OVER, BulkAction, question, scope_choices
from core import labeling
from core.store.models import Image, Label
from core.store.project import Project
from tests.studio_runs import FACES, make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs
from tests.test_app_review import KEY_OF, select_rows

TRAIN_LABELED, VAL_TEST = 14, 21  # the small demo: 2 of 8 train faces per class labeled, 3 val per class
UNLABELED_TRAIN = FACES - TRAIN_LABELED - VAL_TEST


class ChoosingDialogs(FakeDialogs):
    """Answers the bulk question with `pick` (an index; None: Cancel) and records it."""

    def __init__(self):
        super().__init__()
        self.questions: list[tuple[str, list[str]]] = []
        self.pick: int | None = 0  # the default button, as Enter would

    def choose(self, title, message, choices):
        self.questions.append((message, choices))
        return self.pick


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("bulk") / "demo")


@pytest.fixture
def root(template, tmp_path) -> Path:
    return project_copy(template, tmp_path)


@pytest.fixture
def dialogs():
    return ChoosingDialogs()


@pytest.fixture
def window(qtbot, root, dialogs):
    win = studio_window(qtbot, root, dialogs)
    win.labeling.set_annotator("tester")
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def labels(root: Path) -> dict[int, str]:
    with Project.open(root) as project, project.session() as session:
        return dict(session.execute(select(Label.image_id, Label.label)).all())


def faces_by_kind(root: Path) -> dict[str, list[int]]:
    with Project.open(root) as project, project.session() as session:
        splits = dict(session.execute(select(Image.id, Image.split)).all())
    labeled = labels(root)
    return {
        "val_test": sorted(f for f, s in splits.items() if s != "train"),
        "labeled": sorted(f for f, s in splits.items() if s == "train" and f in labeled),
        "unlabeled": sorted(f for f, s in splits.items() if s == "train" and f not in labeled),
    }


def select_all_faces(window) -> None:
    window.center_tabs.setCurrentWidget(window.grid_area)
    window.grid.setFocus()
    window.grid.selectAll()


def test_enter_on_the_bulk_question_labels_only_unlabeled_train_faces(qtbot, window, root, dialogs):
    before, kinds = labels(root), faces_by_kind(root)
    assert (len(kinds["labeled"]), len(kinds["val_test"])) == (TRAIN_LABELED, VAL_TEST) and FACES > BULK_CONFIRM_OVER
    select_all_faces(window)
    qtbot.keyClick(window.grid, KEY_OF["surprise"])
    [(message, choices)] = dialogs.questions
    assert message.startswith(f"{FACES} faces selected: {TRAIN_LABELED} already labeled, {VAL_TEST} in val/test.")
    assert choices == [
        f"Label {UNLABELED_TRAIN} unlabeled train faces as surprise",
        f"Include the {TRAIN_LABELED} labeled ones",
        f"Include val/test too (all {FACES})",
    ]
    after = labels(root)
    assert {f: after[f] for f in before} == before  # labeled train and val/test faces untouched
    assert {after[f] for f in kinds["unlabeled"]} == {"surprise"}
    status = window.statusBar().currentMessage()
    assert f"{UNLABELED_TRAIN} faces labeled surprise" in status
    assert f"Left out: {TRAIN_LABELED} already labeled, {VAL_TEST} in val/test" in status


def test_the_other_choices_include_labeled_then_val_test_faces_and_cancel_changes_nothing(qtbot, window, root, dialogs):
    before, kinds = labels(root), faces_by_kind(root)
    select_all_faces(window)
    dialogs.pick = None
    qtbot.keyClick(window.grid, KEY_OF["fear"])
    assert labels(root) == before and window.statusBar().currentMessage() == "Nothing changed."
    dialogs.pick = 1
    qtbot.keyClick(window.grid, KEY_OF["fear"])
    after = labels(root)
    assert {after[f] for f in kinds["labeled"] + kinds["unlabeled"]} == {"fear"}
    assert {f: after[f] for f in kinds["val_test"]} == {f: before[f] for f in kinds["val_test"]}
    dialogs.pick = 2
    qtbot.keyClick(window.grid, KEY_OF["sadness"])
    assert set(labels(root).values()) == {"sadness"} and len(labels(root)) == FACES


def test_bulk_clear_asks_about_val_test_labels_and_keeps_them_by_default(qtbot, window, root, dialogs):
    before, kinds = labels(root), faces_by_kind(root)
    select_all_faces(window)
    qtbot.keyClick(window.grid, Qt.Key.Key_Backspace)
    [(_message, choices)] = dialogs.questions
    assert choices == [f"Clear {TRAIN_LABELED} labeled train faces", f"Include the {VAL_TEST} in val/test too"]
    assert labels(root) == {f: before[f] for f in kinds["val_test"]}


def test_a_small_selection_leaves_labeled_and_val_test_faces_out_and_says_so(qtbot, window, root, dialogs):
    kinds = faces_by_kind(root)
    chosen = kinds["unlabeled"][:2] + kinds["labeled"][:1] + kinds["val_test"][:1]
    before = labels(root)
    window.center_tabs.setCurrentWidget(window.grid_area)
    window.grid.setFocus()
    select_rows(window.grid, [window.model.row_of(f) for f in chosen])
    qtbot.keyClick(window.grid, KEY_OF["disgust"])
    assert dialogs.questions == []  # under BULK_CONFIRM_OVER: no question
    after = labels(root)
    assert [after.get(f) for f in chosen] == ["disgust", "disgust", before[chosen[2]], before[chosen[3]]]
    status = window.statusBar().currentMessage()
    assert "2 faces labeled disgust" in status and "Left out: 1 already labeled, 1 in val/test" in status
    assert "right-click › Include labeled and val/test" in status
    # The context menu includes them on request (the two just labeled count as labeled now).
    menu = window.labeling.build_context_menu(window.grid)
    [include] = [a.menu() for a in menu.actions() if a.menu() and a.menu().title().startswith("Include")]
    assert include.title() == "Include labeled and val/test (3 labeled, 1 in val/test)"
    [happiness] = [a for a in include.actions() if a.text() == "Label all 4 as happiness"]
    happiness.trigger()
    assert {labels(root)[f] for f in chosen} == {"happiness"} and dialogs.questions == []


def test_the_real_question_defaults_to_the_safe_choice_and_escape_cancels(qtbot):
    from app.dialogs import choice_box

    summary = labeling.SelectionSummary(135, 12, 3)
    action = BulkAction.label("surprise")
    choices = [text for text, _scope in scope_choices(action, summary)]
    assert choices == [
        "Label 120 unlabeled train faces as surprise",
        "Include the 12 labeled ones",
        "Include val/test too (all 135)",
    ]
    for key, expected in ((Qt.Key.Key_Return, 0), (Qt.Key.Key_Escape, None)):
        box, buttons = choice_box(None, "Change many faces", question(action, summary), choices)
        qtbot.addWidget(box)
        box.show()
        qtbot.waitExposed(box)
        assert box.defaultButton() is buttons[0]
        assert "135 faces selected: 12 already labeled, 3 in val/test." in box.text()
        qtbot.keyClick(box, key)
        clicked = box.clickedButton()
        assert (buttons.index(clicked) if clicked in buttons else None) == expected


def test_a_busy_database_is_explained_not_dumped(qtbot, window, root, dialogs, monkeypatch):
    def locked(*_args, **_kwargs):
        raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(labeling, "set_label", locked)
    window.center_tabs.setCurrentWidget(window.grid_area)
    window.grid.setFocus()
    window.grid.select_row(0)
    qtbot.keyClick(window.grid, KEY_OF["fear"])
    [(title, message)] = dialogs.errors
    assert title == "Label not saved"
    assert message.startswith(f"The project ({root}) is busy: another program is writing to it.")
    assert "OperationalError" not in message and "BEGIN IMMEDIATE" not in message
