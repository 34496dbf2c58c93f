"""The studio's Undo and Redo actions enable themselves from what each change says (core.studio_api's
Change) and, on opening a project or changing the annotator, from the corrections log; a big bulk
step is written off the GUI thread while the keys wait."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from core import labeling
from core.store.project import Project
from tests.studio_runs import make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

ANNOTATOR = "tester"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("undo-state") / "demo", runs=("sitfer",))


@pytest.fixture
def root(template, tmp_path) -> Path:
    return project_copy(template, tmp_path)


@pytest.fixture
def window(qtbot, root):
    win = studio_window(qtbot, root, FakeDialogs())
    win.labeling.set_annotator(ANNOTATOR)
    yield win
    win.close()


def actions(window) -> tuple[bool, bool]:
    return window.labeling.undo_action.isEnabled(), window.labeling.redo_action.isEnabled()


def first_unlabeled_row(window) -> int:
    model = window.model
    return next(
        row for row in range(model.rowCount()) if model.face(row).label is None and model.face(row).split == "train"
    )


def test_undo_and_redo_enable_themselves(qtbot, window):
    assert actions(window) == (False, False)  # a fresh project: nothing to undo
    window.grid.select_row(first_unlabeled_row(window))
    window.labeling.label("fear")
    assert actions(window) == (True, False)
    window.labeling.undo_action.trigger()
    assert actions(window) == (False, True)
    window.labeling.redo_action.trigger()
    assert actions(window) == (True, False)
    window.labeling.set_annotator("someone else")  # undo takes back only one's own steps
    assert actions(window) == (False, False)
    window.labeling.set_annotator(ANNOTATOR)
    assert actions(window) == (True, False)


def test_the_studio_judges_annotator_names_as_core_labeling_does(qtbot, window, tmp_path):
    from PySide6.QtCore import QSettings

    from app.dialogs import AnnotatorDialog
    from app.labeling_controller import KEY_ANNOTATOR, annotator_name

    too_long = "x" * (labeling.MAX_ANNOTATOR_LENGTH + 1)
    with pytest.raises(labeling.LabelingError) as refused:
        labeling.check_annotator(too_long)
    core_says = str(refused.value)
    messages: list[str] = []
    window.labeling.message.connect(messages.append)
    assert not window.labeling.set_annotator(too_long) and window.labeling.annotator == ANNOTATOR
    assert messages == [f"{core_says[:1].upper()}{core_says[1:]}; still labeling as {ANNOTATOR}."]
    assert window.labeling.set_annotator("  ana  ") and window.labeling.annotator == "ana"

    settings = QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat)
    settings.setValue(KEY_ANNOTATOR, too_long)  # kept by an older studio, or edited by hand
    assert annotator_name(settings) == labeling.default_annotator()
    settings.setValue(KEY_ANNOTATOR, " bob ")
    assert annotator_name(settings) == "bob"

    dialog = AnnotatorDialog("ana")
    qtbot.addWidget(dialog)
    dialog.edit.setText("   ")
    with pytest.raises(labeling.LabelingError) as empty:
        labeling.check_annotator("   ")
    assert dialog.hint.text().lower() == str(empty.value).lower() + "."


def test_opening_a_project_reads_the_state_from_the_log(qtbot, root, tmp_path):
    with Project.open(root) as project:
        face = next(f for f in labeling_candidates(project))
        labeling.set_label(project, face, "anger", ANNOTATOR)
        labeling.undo(project, ANNOTATOR)
    win = studio_window(qtbot, root, FakeDialogs())
    win.labeling.set_annotator(ANNOTATOR)
    assert actions(win) == (False, True)  # after a restart: redo is there, undo is not
    other = make_demo(tmp_path / "other")
    assert win.open_project(other) and actions(win) == (False, False)
    win.close()


def labeling_candidates(project):
    from core.studio_api import StudioApi

    return [face.id for face in StudioApi(project).faces.list(split="train", labeled=False)]


def test_a_big_bulk_step_is_written_in_the_background(qtbot, window, monkeypatch):
    import app.labeling_controller as controller_module
    from app.bulk_scope import SAFE

    monkeypatch.setattr(controller_module, "BACKGROUND_BULK_OVER", 3)
    model = window.model
    rows = [
        row for row in range(model.rowCount()) if model.face(row).label is None and model.face(row).split == "train"
    ][:6]
    ids = [model.face(row).id for row in rows]
    select(window.grid, rows)
    assert sorted(window.labeling.target_ids()) == sorted(ids)
    controller = window.labeling
    with qtbot.waitSignal(window.state.labels_changed, timeout=30_000) as changed:
        assert controller.label("happiness", SAFE) is None  # under way, not done yet
        assert controller.bulk_job is not None and actions(window) == (False, False)
        assert controller.label("fear") is None  # the keys wait for the step to be saved
    assert sorted(changed.args[0]) == sorted(ids)
    qtbot.waitUntil(lambda: controller.bulk_job is None, timeout=10_000)
    assert actions(window) == (True, False)
    assert {model.face(row).label for row in rows} == {"happiness"}


def select(grid, rows: list[int]) -> None:
    from PySide6.QtCore import QItemSelection, QItemSelectionModel

    selection = QItemSelection()
    for row in rows:
        index = grid.model().index(row)
        selection.select(index, index)
    grid.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
