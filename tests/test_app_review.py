"""The review workflow in the studio, offscreen: the review queue (order, strategies, filters,
empty state), the detail panel (absent levels, provenance, nearest labeled faces), the keyboard
flow through core.labeling (label, accept, skip, clear, undo/redo across a restart), bulk
labeling of a selection and of the map's lasso, the shortcut help, and the description
editor's save and re-score. Assertions read the database, not just the widgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from dataclasses import replace

from PySide6.QtCore import SIGNAL, QItemSelection, QItemSelectionModel, Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtTest import QTest
from sqlalchemy import select

from core.active import STRATEGIES, QueueFilters, build_queue
from core.classes import class_names, expression_classes
from core.encoders.text import load_descriptions, project_descriptions_path
from core.geometry import points_in_polygon
from core.store.models import Correction, Image, Label, Prediction
from core.store.project import Project
from tests.studio_runs import FACES, make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

FIXMATCH_RUN, SITFER_RUN = 1, 2  # the template's runs; the newest (sitfer) is current on opening
ANNOTATOR = "tester"
KEY_OF = {cls.name: cls.key for cls in expression_classes()}


class ReviewDialogs(FakeDialogs):
    def __init__(self):
        super().__init__()
        self.confirmations: list[str] = []
        self.answer = True

    def choose(self, title, message, choices):
        """The bulk question: yes takes the widest choice (val/test included), no cancels."""
        self.confirmations.append(message)
        return len(choices) - 1 if self.answer else None


@pytest.fixture(scope="module")
def review_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("review") / "demo", runs=("fixmatch", "sitfer"))


@pytest.fixture
def review_project(review_template, tmp_path) -> Path:
    return project_copy(review_template, tmp_path)


@pytest.fixture
def dialogs():
    return ReviewDialogs()


def open_window(qtbot, root: Path, dialogs):
    window = studio_window(qtbot, root, dialogs)
    window.labeling.set_annotator(ANNOTATOR)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def window(qtbot, review_project, dialogs):
    win = open_window(qtbot, review_project, dialogs)
    yield win
    win.close()


def wait_for_queue(qtbot, window) -> list[int]:
    review = window.review
    qtbot.waitUntil(lambda: not review.building and review.answered == review.request(), timeout=10_000)
    return [review.model.face(row).id for row in range(review.model.rowCount())]


def start_review(qtbot, window) -> list[int]:
    window.show_review()
    ids = wait_for_queue(qtbot, window)
    window.review.grid.setFocus()
    return ids


def label_row(root: Path, face_id: int):
    with Project.open(root) as project, project.session() as session:
        row = session.get(Label, face_id)
        return None if row is None else (row.label, row.source, row.annotator)


def corrections(root: Path) -> list[Correction]:
    with Project.open(root) as project, project.session() as session:
        return list(session.scalars(select(Correction).order_by(Correction.id)))


def prediction(root: Path, run_id: int, face_id: int) -> Prediction:
    with Project.open(root) as project, project.session() as session:
        return session.get(Prediction, (run_id, face_id))


# -- the queue -----------------------------------------------------------------------------------
def test_the_queue_shows_cores_order_for_each_strategy(qtbot, window, review_project):
    review = window.review
    assert window.state.current_run == SITFER_RUN
    shown = start_review(qtbot, window)
    with Project.open(review_project) as project:
        expected = [item.face_id for item in build_queue(project, SITFER_RUN, "margin", 50)]
        assert shown == expected and len(shown) == 42  # every unlabeled train face, least sure first
        for name in ("entropy", "least_confidence", "disagreement"):
            review.set_strategy(name)
            assert wait_for_queue(qtbot, window) == [i.face_id for i in build_queue(project, SITFER_RUN, name, 50)]
            assert "high thresholds" not in review.summary.text() and not review.summary.toolTip()
        # The template's sitfer run keeps sitfer's fixed 0.95: near threshold says it ranks badly here.
        review.set_strategy("near_threshold")
        wait_for_queue(qtbot, window)
        assert "high thresholds: try margin" in review.summary.text()
        assert "thresholds are high (0.95)" in review.summary.toolTip()
    # Every registered strategy is offered, with its description as the tooltip.
    combo = review.strategy_combo
    offered = {combo.itemData(i): combo.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(combo.count())}
    assert offered == {name: strategy.description for name, strategy in STRATEGIES.items()}
    # The grid shows the rank and the reason of each face.
    first = review.model.index(0)
    item = review.model.item_for(review.model.face(0).id)
    assert item.rank == 1 and item.reason in first.data(Qt.ItemDataRole.ToolTipRole)


def test_filters_and_limit_give_cores_queue(qtbot, window, review_project):
    review = window.review
    start_review(qtbot, window)
    review.set_choice(review.labels_combo, "all")
    review.set_choice(review.split_combo, None)
    review.limit_spin.setValue(20)
    shown = wait_for_queue(qtbot, window)
    with Project.open(review_project) as project:
        assert shown == [
            i.face_id
            for i in build_queue(project, SITFER_RUN, "margin", 20, split=None, filters=QueueFilters(labels="all"))
        ]
        assert len(shown) == 20
        top_pair = build_queue(project, SITFER_RUN, "margin", 1, split=None, filters=QueueFilters(labels="all"))[0]
        pair = (top_pair.pseudo_label, top_pair.runner_up)
        # The combo spells a pair one way (the common confusions as people say them: fear/surprise).
        spelled = next(
            f"{one}/{two}" for one, two in (pair, pair[::-1]) if review.pair_combo.findData(f"{one}/{two}") > 0
        )
        review.set_choice(review.pair_combo, spelled)
        assert review.pair_combo.currentIndex() > 0
        review.set_choice(review.pseudo_combo, top_pair.pseudo_label)
        shown = wait_for_queue(qtbot, window)
        filters = QueueFilters(labels="all", pseudo_label=top_pair.pseudo_label, pair=pair)
        expected = [i.face_id for i in build_queue(project, SITFER_RUN, "margin", 20, split=None, filters=filters)]
    assert shown == expected and top_pair.face_id in shown
    # A filter nothing matches says so instead of showing an empty grid.
    review.set_choice(review.split_combo, "test")  # the demo has no test split
    wait_for_queue(qtbot, window)
    assert review.pages.currentWidget() is review.empty and "No queue" in review.empty.text()


def test_without_a_finished_run_the_queue_says_how_to_get_one(qtbot, tmp_path, dialogs):
    root = make_demo(tmp_path / "bare")
    window = open_window(qtbot, root, dialogs)
    window.show_review()
    review = window.review
    assert review.pages.currentWidget() is review.empty and review.model.rowCount() == 0
    assert "No finished training run" in review.empty.text() and "Ctrl+T" in review.empty.text()
    assert window.detail.pages.currentWidget() is window.detail.empty
    window.close()


# -- the keyboard flow -----------------------------------------------------------------------------
def test_a_number_key_labels_the_face_and_moves_on(qtbot, window, review_project):
    shown = start_review(qtbot, window)
    grid = window.review.grid
    first, second = shown[0], shown[1]
    assert window.detail.face_id == first
    item = window.review.model.item_for(first)
    qtbot.keyClick(grid, "3")  # classes.json: 3 = disgust
    assert label_row(review_project, first) == ("disgust", "annotator", ANNOTATOR)
    [correction] = corrections(review_project)
    assert (correction.image_id, correction.new_label, correction.suggestion, correction.run_id) == (
        first,
        "disgust",
        item.pseudo_label,
        SITFER_RUN,
    )
    # Auto-advance: the next face is current and in the detail panel; the grid, the counts and
    # the status bar show the new label.
    assert grid.current_face().id == second and window.detail.face_id == second
    assert window.review.model.face(0).label == "disgust"
    # The counts follow once the keys pause (one count of the project per pause, not per key).
    qtbot.waitUntil(lambda: window.panel.total_labels["labeled"].text() == "36", timeout=3000)
    assert "1 labeled today" in window.counts_label.full_text()
    # Back on the labeled face, the panel says who labeled it.
    qtbot.keyClick(grid, Qt.Key.Key_Left)
    assert window.detail.face_id == first and f"by {ANNOTATOR}" in window.detail.label_text.text()


def test_enter_accepts_the_suggestion_space_skips_backspace_clears(qtbot, window, review_project):
    shown = start_review(qtbot, window)
    grid = window.review.grid
    qtbot.keyClick(grid, Qt.Key.Key_Space)
    assert grid.current_face().id == shown[1] and corrections(review_project) == []
    qtbot.keyClick(grid, Qt.Key.Key_Return)
    suggested = prediction(review_project, SITFER_RUN, shown[1]).pseudo_label
    assert label_row(review_project, shown[1]) == (suggested, "annotator", ANNOTATOR)
    assert label_row(review_project, shown[0]) is None  # skipped, not labeled
    assert grid.current_face().id == shown[2]
    qtbot.keyClick(grid, Qt.Key.Key_Left)
    qtbot.keyClick(grid, Qt.Key.Key_Backspace)
    assert label_row(review_project, shown[1]) is None and grid.current_face().id == shown[1]
    assert [c.new_label for c in corrections(review_project)] == [suggested, None]


def test_undo_and_redo_survive_closing_and_reopening_the_project(qtbot, review_project, dialogs):
    window = open_window(qtbot, review_project, dialogs)
    shown = start_review(qtbot, window)
    grid = window.review.grid
    qtbot.keyClick(grid, KEY_OF["fear"])
    qtbot.keyClick(grid, KEY_OF["anger"])
    assert label_row(review_project, shown[1])[0] == "anger"
    window.activateWindow()
    qtbot.keyClick(grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert label_row(review_project, shown[1]) is None and label_row(review_project, shown[0])[0] == "fear"
    message = window.statusBar().currentMessage()
    assert message == f"Undone: face {shown[1]}: anger -> unlabeled"
    assert grid.current_face().id == shown[1]  # the undone face is shown
    window.close()

    again = open_window(qtbot, review_project, dialogs)
    assert again.labeling.annotator == ANNOTATOR  # kept in the settings
    again.labeling.undo_action.trigger()
    assert label_row(review_project, shown[0]) is None
    assert again.statusBar().currentMessage() == f"Undone: face {shown[0]}: fear -> unlabeled"
    again.labeling.redo_action.trigger()
    assert label_row(review_project, shown[0]) == ("fear", "annotator", ANNOTATOR)
    assert again.statusBar().currentMessage() == f"Redone: face {shown[0]}: unlabeled -> fear"
    assert [k.toString() for k in again.labeling.redo_action.shortcuts()] == ["Ctrl+Shift+Z", "Ctrl+Y"]
    again.close()


# -- bulk ------------------------------------------------------------------------------------------
def select_rows(grid, rows) -> None:
    selection = QItemSelection()
    for row in rows:
        index = grid.model().index(row)
        selection.select(index, index)
    grid.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)


def test_bulk_label_of_a_selection_is_one_undo_step(qtbot, window, review_project, dialogs):
    shown = start_review(qtbot, window)
    grid = window.review.grid
    select_rows(grid, [0, 2, 4])
    qtbot.keyClick(grid, KEY_OF["sadness"])
    chosen = {shown[0], shown[2], shown[4]}
    rows = corrections(review_project)
    assert {c.image_id for c in rows} == chosen and {c.new_label for c in rows} == {"sadness"}
    assert len({c.batch_id for c in rows}) == 1 and rows[0].batch_id is not None
    assert dialogs.confirmations == []  # three faces need no confirmation
    assert "3 faces labeled sadness" in window.statusBar().currentMessage()
    window.labeling.undo()
    assert all(label_row(review_project, f) is None for f in chosen)
    # Every face at once: more than BULK_CONFIRM_OVER asks first, and a "no" changes nothing;
    # including val/test (the widest choice) labels every face.
    window.center_tabs.setCurrentWidget(window.grid_area)
    window.grid.setFocus()
    window.grid.selectAll()
    dialogs.answer = False
    qtbot.keyClick(window.grid, KEY_OF["neutral"])
    assert len(dialogs.confirmations) == 1 and str(FACES) in dialogs.confirmations[0]
    assert len(corrections(review_project)) == 3  # only the undone step
    dialogs.answer = True
    qtbot.keyClick(window.grid, KEY_OF["neutral"])
    with Project.open(review_project) as project, project.session() as session:
        assert set(session.scalars(select(Label.label))) == {"neutral"}
        assert session.query(Label).count() == FACES


def test_the_context_menu_labels_the_selection(qtbot, window, review_project):
    shown = start_review(qtbot, window)
    grid = window.review.grid
    select_rows(grid, [1, 3])
    menu = window.labeling.build_context_menu(grid)
    [label_menu] = [a.menu() for a in menu.actions() if a.menu() is not None]
    assert label_menu.title() == "Label 2 faces as"
    [fear] = [a for a in label_menu.actions() if a.text() == f"fear\t{KEY_OF['fear']}"]
    fear.trigger()
    assert {label_row(review_project, f)[0] for f in (shown[1], shown[3])} == {"fear"}
    [clear] = [a for a in menu.actions() if a.text().startswith("Clear the label of 2 faces")]
    clear.trigger()
    assert label_row(review_project, shown[1]) is None and label_row(review_project, shown[3]) is None
    assert len({c.batch_id for c in corrections(review_project)}) == 2  # two steps, one per action


def test_lasso_on_the_map_then_bulk_label_from_the_grid(qtbot, window, review_project):
    view, model = window.map_view, window.model
    data = view.data
    low, high = np.percentile(data.xy, 10, axis=0), np.percentile(data.xy, 60, axis=0)
    lasso = np.array([low, (high[0], low[1]), high, (low[0], high[1])])
    expected = set(data.ids[points_in_polygon(data.xy, lasso)].tolist())
    assert 3 <= len(expected) < FACES
    view.select_lasso(lasso)
    assert {model.face(r).id for r in range(model.rowCount())} == expected
    with Project.open(review_project) as project, project.session() as session:
        before = dict(session.execute(select(Label.image_id, Label.label)).all())
        train = set(session.scalars(select(Image.id).where(Image.split == "train")))
    window.grid.setFocus()
    window.grid.selectAll()
    qtbot.keyClick(window.grid, KEY_OF["happiness"])
    with Project.open(review_project) as project, project.session() as session:
        steps = session.execute(select(Correction.image_id, Correction.batch_id)).all()
        labels = dict(session.execute(select(Label.image_id, Label.label)).all())
    changed = {face for face, _batch in steps}
    # The unlabeled train faces, as one step; labeled and val/test faces are left as they were.
    assert changed == {f for f in expected if f in train and f not in before}
    assert len({batch for _f, batch in steps}) == 1
    assert all(labels[f] == ("happiness" if f in changed else before[f]) for f in expected)
    assert all(model.face(r).label == labels[model.face(r).id] for r in range(model.rowCount()))
    window.labeling.undo()
    with Project.open(review_project) as project, project.session() as session:
        assert not set(session.scalars(select(Label.image_id).where(Label.label == "happiness"))) & changed


# -- the detail panel --------------------------------------------------------------------------------
def test_detail_panel_shows_absent_levels_as_absent(qtbot, window, review_project):
    detail = window.detail
    start_review(qtbot, window)
    face_id = detail.face_id
    stored = prediction(review_project, SITFER_RUN, face_id)
    assert stored.p_instance is None  # 30 steps: the instance level's warm-up was not reached
    assert detail.bars.absent_levels() == ["instance"]
    assert np.allclose(detail.bars.levels["text"], stored.p_text)
    assert np.allclose(detail.bars.levels["fused"], stored.p_fused)
    assert "Absent: instance" in detail.levels_note.text()
    assert detail.evidence.thresholds is not None  # the ticks' positions
    window.state.set_current_run(FIXMATCH_RUN)  # e.g. chosen in the run history
    wait_for_queue(qtbot, window)
    assert window.review.last_result.request.run_id == FIXMATCH_RUN and window.run_label.text() == "run 1"
    assert detail.bars.absent_levels() == ["text", "instance"] and detail.bars.levels["semantic"] is not None
    assert "Absent: text, instance" in detail.levels_note.text()
    image = detail.bars.grab()
    assert image.width() >= detail.bars.minimumSizeHint().width()


def test_detail_panel_gives_provenance_and_nearest_labeled_faces(qtbot, window, review_project):
    detail = window.detail
    window.center_tabs.setCurrentWidget(window.grid_area)
    with Project.open(review_project) as project, project.session() as session:
        imported = session.scalar(select(Label.image_id).where(Label.source == "imported").limit(1))
    window.grid.select_row(window.model.row_of(imported))
    assert detail.face_id == imported and "imported with the data" in detail.label_text.text()
    qtbot.waitUntil(lambda: bool(detail.strip.neighbours), timeout=10_000)
    neighbours = [n for n, _face in detail.strip.neighbours]
    with Project.open(review_project) as project, project.session() as session:
        labeled = dict(
            session.execute(
                select(Label.image_id, Label.label).join(Prediction, Prediction.image_id == Label.image_id)
            ).all()
        )
        from core.active.data import load_embeddings
        from core.store.models import Image

        train = set(session.scalars(select(Image.id).where(Image.split == "train")))
        ids = np.array(sorted(f for f in labeled if f in train and f != imported))
        _found, vectors = load_embeddings(session, SITFER_RUN, ids)
        _found, query = load_embeddings(session, SITFER_RUN, np.array([imported]))
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ (query[0] / np.linalg.norm(query[0]))
    best = np.argsort(-similarity)[: len(neighbours)]
    assert [n.face_id for n in neighbours] == ids[best].tolist()
    assert [n.label for n in neighbours] == [labeled[f] for f in ids[best]]
    assert np.allclose([n.similarity for n in neighbours], similarity[best], atol=1e-5)


# -- help and descriptions -------------------------------------------------------------------------------
def test_question_mark_shows_every_key_and_any_key_hides_it(qtbot, window):
    window.activateWindow()
    qtbot.keyClick(window.grid, Qt.Key.Key_Question)
    assert window.help_overlay.isVisible()
    (_grid, grid_rows), (_window, window_rows) = window.help_overlay.sections
    grid_keys, window_keys = [key for key, _ in grid_rows], [key for key, _ in window_rows]
    assert [cls.key for cls in expression_classes()] == grid_keys[:7]
    for key in ("Enter", "Space", "Backspace / Delete", "← → ↑ ↓"):
        assert key in grid_keys
    for key in ("Ctrl+Z", "Ctrl+Shift+Z / Ctrl+Y", "Ctrl+R", "F1 / ?"):
        assert key in window_keys
    assert all(text for _key, text in grid_rows + window_rows)
    size = window.help_overlay.card_size()
    assert size.width() <= window.width() and size.height() <= window.height()
    qtbot.keyClick(window.help_overlay, Qt.Key.Key_Escape)
    assert not window.help_overlay.isVisible()


def _native(sequence: QKeySequence) -> str:
    return sequence.toString(QKeySequence.SequenceFormat.NativeText)


def test_every_shortcut_of_the_window_is_in_the_help_and_each_one_triggers_its_action(qtbot, window):
    """The help's window keys are the menu bar's live shortcuts: a shortcut anywhere in the
    window is listed, and pressing each listed key fires an action something is connected to."""
    from app.shortcut_help import shortcut_actions

    listed = [key for _title, rows in window.key_sections() for key, _text in rows]
    listed_keys = {part for key in listed for part in key.split(" / ")}
    keys = [key for action in window.findChildren(QAction) for key in action.shortcuts()]
    keys += [key for shortcut in window.findChildren(QShortcut) for key in shortcut.keys()]  # noqa: SIM118
    unlisted = [_native(key) for key in keys if _native(key) not in listed_keys]
    assert not unlisted, f"shortcuts without a line in the help: {unlisted}"

    window.activateWindow()
    window.grid.setFocus()
    actions = shortcut_actions(window.menuBar())
    assert window.labeling.undo_action in actions and window.labeling.redo_action in actions
    fired: list[str] = []
    for action in actions:
        assert action.receivers(SIGNAL("triggered(bool)")) > 0, f"{action.text()} does nothing"
        action.triggered.disconnect()  # pressed below without quitting, opening dialogs or closing docks
        action.setEnabled(True)
        text = action.text()
        action.triggered.connect(lambda _=False, text=text: fired.append(text))
    for action in actions:
        for key in action.shortcuts():
            QTest.keySequence(window.grid, key)
    assert fired == [action.text() for action in actions for _key in action.shortcuts()]


def test_every_grid_key_of_the_help_reaches_what_it_says(qtbot, window):
    """Each review key's keys reach its own step (the key filter dispatches by the same table the
    help lists), and the grid's own keys do what their line says."""
    from app.face_grid import GRID_OWN_KEYS

    labeling, grid = window.labeling, window.grid
    assert labeling.key_rows() == [(key.shown, key.help) for key in labeling.review_keys] + list(GRID_OWN_KEYS)
    pressed: list[str] = []
    expected: list[str] = []
    labeling.review_keys = [
        replace(key, act=lambda shown=key.shown: pressed.append(shown)) for key in labeling.review_keys
    ]
    grid.setFocus()
    for key in labeling.review_keys:
        for typed in (*key.texts, *key.keys):
            qtbot.keyClick(grid, typed)
            expected.append(key.shown)
    assert pressed == expected and len(set(pressed)) == len(labeling.review_keys)

    def arrows_move():
        grid.select_row(0)
        qtbot.keyClick(grid, Qt.Key.Key_Right)
        return grid.currentIndex().row() == 1

    def select_several():
        grid.select_row(0)
        qtbot.keyClick(grid, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
        everything = len(grid.selected_ids()) == grid.model().rowCount()
        grid.select_row(0)
        third = grid.visualRect(grid.model().index(2, 0)).center()
        qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, third)
        return everything and len(grid.selected_ids()) == 3

    checks = {"← → ↑ ↓": arrows_move, "Shift/Ctrl + click, Ctrl+A": select_several}
    assert set(checks) == {shown for shown, _text in GRID_OWN_KEYS}, "a grid key without its check here"
    assert all(check() for check in checks.values())


def test_description_editor_saves_and_rescores_the_text_level(qtbot, window, review_project):
    before = {f: prediction(review_project, SITFER_RUN, f).p_text for f in (1, 2, 3)}
    start_review(qtbot, window)
    window.edit_descriptions()
    editor = window.description_editor
    assert editor.descriptions() == load_descriptions()  # the project has no copy yet: the shipped ones
    editor.set_descriptions("fear", [])
    assert not editor.save() and "fear" in editor.status.text()  # every class needs one
    assert not project_descriptions_path(review_project).exists()
    editor.set_descriptions("fear", ["eyes wide with terror", "mouth stretched in a scream"])
    editor.set_descriptions("surprise", ["an open mouth"])
    editor.rescore_button.click()
    qtbot.waitUntil(lambda: not editor.busy, timeout=30_000)
    saved = json.loads(project_descriptions_path(review_project).read_text())
    assert saved["fear"] == ["eyes wide with terror", "mouth stretched in a scream"]
    assert saved["surprise"] == ["an open mouth"]
    assert editor.last_result is not None and editor.last_result.faces == FACES, editor.status.text()
    after = {f: prediction(review_project, SITFER_RUN, f) for f in (1, 2, 3)}
    assert all(not np.allclose(before[f], after[f].p_text) for f in before)
    for row in after.values():  # the stored row is consistent: pseudo-label = argmax of fused
        assert row.pseudo_label == class_names()[int(np.argmax(row.p_fused))]
    wait_for_queue(qtbot, window)  # the views reloaded the re-scored run
    face_id = window.detail.face_id
    assert np.allclose(window.detail.bars.levels["text"], prediction(review_project, SITFER_RUN, face_id).p_text)
    editor.close()


def test_detail_panel_draws_the_face_mesh_when_asked(qtbot, window, review_project):
    import shutil

    from core.training.data import load_face_table
    from core.training.geometry import LandmarkCache

    with Project.open(review_project) as project:  # a project whose meshes are not computed yet
        shutil.rmtree(LandmarkCache(project.cache_dir("features")).folder)
    detail = window.detail
    start_review(qtbot, window)
    face_id = detail.face_id
    plain = detail.image.pixmap().toImage()
    assert not detail.points_box.isChecked()
    detail.points_box.setChecked(True)  # no mesh computed yet: the face as it was, and why
    assert detail.image.pixmap().toImage() == plain and "no key points" in detail.image.toolTip()
    with Project.open(review_project) as project, project.session() as session:
        faces = load_face_table(project, session)
        LandmarkCache(project.cache_dir("features")).load(faces, np.flatnonzero(faces.ids == face_id))
    detail.points_box.setChecked(False)
    detail.points_box.setChecked(True)
    assert "468-point face mesh" in detail.image.toolTip()
    assert detail.image.pixmap().toImage() != plain
    detail.points_box.setChecked(False)
    assert detail.image.pixmap().toImage() == plain
