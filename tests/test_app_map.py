"""The embedding map: run data as arrays, level disagreement, selection geometry, colouring,
hover, selection filtering the grid, empty states, and 30,000 points drawn and lassoed exactly.
How fast the map loads, draws and pans is measured in bench/map_timings.py, not here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QItemSelectionModel, QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QMouseEvent
from PySide6.QtWidgets import QApplication
from sqlalchemy import func, insert, select, update

from core.active.scores import js_divergence
from core.classes import class_names
from core.geometry import points_in_polygon, points_in_rect
from core.run_data import RunMap, level_disagreement, load_run_map
from core.store.models import Image, Label, Prediction, Projection, Run
from core.store.project import Project
from tests.studio_runs import FACES, make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

COLUMNS = 11  # known coordinates: the k-th face (in id order) sits at (k % 11, k // 11)


@pytest.fixture(scope="module")
def run_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("map") / "demo", runs=("sitfer",))


@pytest.fixture
def run_project(run_template, tmp_path) -> Path:
    return project_copy(run_template, tmp_path)


@pytest.fixture
def window(qtbot, run_project):
    win = studio_window(qtbot, run_project, FakeDialogs())
    yield win
    win.close()


def put_on_grid(root: Path) -> list[int]:
    """Move every face of run 1's map to known coordinates; returns the face ids in id order."""
    with Project.open(root) as project, project.session() as session:
        ids = list(
            session.scalars(select(Projection.image_id).where(Projection.run_id == 1).order_by(Projection.image_id))
        )
        for k, face_id in enumerate(ids):
            session.execute(
                update(Projection)
                .where(Projection.run_id == 1, Projection.image_id == face_id)
                .values(x=float(k % COLUMNS), y=float(k // COLUMNS))
            )
    return ids


def ids_where(ids: list[int], rule) -> set[int]:
    return {face_id for k, face_id in enumerate(ids) if rule(k % COLUMNS, k // COLUMNS)}


# -- core: numbers and geometry -------------------------------------------------------------------
def test_js_divergence_on_hand_made_arrays():
    same = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    assert np.allclose(js_divergence([same, same]), 0.0, atol=1e-6)
    opposite = js_divergence([np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])])
    assert opposite == pytest.approx([1.0], abs=1e-6)  # one bit: the most two distributions can differ
    # M = (0.75, 0.25): H(M) = 0.811278; entropies 1 and 0, mean 0.5.
    half = js_divergence([np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])])
    assert half == pytest.approx([0.811278 - 0.5], abs=1e-5)
    three = js_divergence(np.eye(3)[:, None, :])  # three one-hot levels, each on another class
    assert three == pytest.approx([np.log2(3)], abs=1e-6)
    a, b = np.array([[0.7, 0.2, 0.1]]), np.array([[0.1, 0.3, 0.6]])
    assert js_divergence([a, b]) == pytest.approx(js_divergence([b, a]), abs=1e-9)  # symmetric
    # The map's wrapper: None for a one-level run; NaN for a face that lacks a level.
    assert level_disagreement({"semantic": a}) is None
    both = level_disagreement({"semantic": np.vstack([a, a]), "text": np.vstack([b, np.full((1, 3), np.nan)])})
    assert both.dtype == np.float32 and both[0] == pytest.approx(js_divergence([a, b])[0]) and np.isnan(both[1])


def test_rectangle_and_polygon_hold_exactly_the_points_inside():
    xy = np.array([(x, y) for y in range(5) for x in range(5)], dtype=float)
    inside = points_in_rect(xy, (3.5, 2.5), (0.5, 0.5))  # corners in any order
    assert {tuple(p) for p in xy[inside]} == {(x, y) for x in (1, 2, 3) for y in (1, 2)}
    # An L-shaped (concave) lasso: the notch at the top right stays out.
    lasso = [(-0.5, -0.5), (3.5, -0.5), (3.5, 1.5), (1.5, 1.5), (1.5, 4.5), (-0.5, 4.5)]
    expected = {(x, y) for x in range(5) for y in range(5) if (y <= 1 and x <= 3) or (x <= 1 and y <= 4)}
    assert {tuple(p) for p in xy[points_in_polygon(xy, lasso)]} == expected
    assert not points_in_polygon(xy, [(0, 0), (4, 4)]).any()  # two vertices enclose nothing


def test_a_run_loads_as_arrays(run_project):
    with Project.open(run_project) as project, project.session() as session:
        run_map = load_run_map(session, 1)
        fused = dict(
            session.execute(select(Prediction.image_id, Prediction.p_fused).where(Prediction.run_id == 1)).all()
        )
        labels = dict(session.execute(select(Label.image_id, Label.label)).all())
    assert run_map.method == "pca" and run_map.methods == ("pca",)
    assert len(run_map) == FACES and run_map.xy.shape == (FACES, 2) and list(run_map.ids) == sorted(run_map.ids)
    names = class_names()
    for i, face_id in enumerate(run_map.ids.tolist()):
        assert run_map.labels[i] == (names.index(labels[face_id]) if face_id in labels else -1)
        assert run_map.pseudo[i] == int(np.argmax(fused[face_id]))
    assert set(run_map.levels) >= {"semantic", "text"}
    expected = js_divergence(list(run_map.levels.values()))
    assert np.allclose(run_map.disagreement, expected) and (run_map.disagreement >= 0).all()
    assert np.all((run_map.confidence > 0) & (run_map.confidence <= 1))


def test_thirty_thousand_faces_load_as_arrays(tmp_path):
    n = 30_000
    with Project.create(tmp_path / "big") as project:
        with project.session() as session:
            session.execute(
                insert(Image),
                [
                    {"id": i, "path": f"f{i}.png", "content_hash": f"{i:064d}", "width": 48, "height": 48}
                    for i in range(1, n + 1)
                ],
            )
            run = Run(algorithm="sitfer", encoder="tiny", status="finished")
            session.add(run)
            session.flush()
            rng = np.random.default_rng(0)
            probs = rng.dirichlet(np.ones(7), size=(3, n)).round(5).tolist()
            session.execute(
                insert(Prediction),
                [
                    {
                        "run_id": run.id,
                        "image_id": i + 1,
                        "p_semantic": probs[0][i],
                        "p_text": probs[1][i],
                        "p_instance": probs[2][i],
                        "p_fused": probs[0][i],
                        "pseudo_label": "fear",
                        "confidence": 0.5,
                        "passed_threshold": False,
                    }
                    for i in range(n)
                ],
            )
            session.execute(
                insert(Projection),
                [
                    {"run_id": run.id, "image_id": i + 1, "method": "umap", "x": float(i % 173), "y": float(i // 173)}
                    for i in range(n)
                ],
            )
            session.execute(
                insert(Label), [{"image_id": i, "label": "anger", "source": "imported"} for i in range(1, n + 1, 10)]
            )
        with project.session() as session:
            run_map = load_run_map(session, run.id)
    assert len(run_map) == n and run_map.method == "umap" and set(run_map.levels) == {"semantic", "text", "instance"}
    assert (run_map.labels >= 0).sum() == n // 10 and run_map.disagreement.shape == (n,)


# -- the map in the window ------------------------------------------------------------------------
def test_the_map_shows_the_latest_run_and_says_it_is_pca(window):
    from app.embedding_map import EmbeddingMap

    view: EmbeddingMap = window.map_view
    assert window.state.current_run == 1
    assert view.pages.currentWidget() is view.map_page
    assert len(view.scatter.data) == FACES
    assert "PCA only" in view.info.text() and "no UMAP" in view.info.text()
    assert not view.method_combo.isVisible()


def test_each_colouring_gives_one_brush_per_point(window):
    from app.map_colors import COLOR_MODES, COLOR_STEPS, color_points

    view = window.map_view
    data = view.data
    for mode in COLOR_MODES:
        colors = color_points(data, mode)
        assert len(colors.brushes) == len(data) == FACES
        assert sorted(colors.order.tolist()) == list(range(FACES))
        distinct = {b.color().name(QColor.NameFormat.HexArgb) for b in colors.brushes}
        limit = 8 if mode in ("label", "pseudo") else COLOR_STEPS + 1
        assert 1 <= len(distinct) <= limit, mode  # a small palette: cheap for pyqtgraph's symbol cache
        view.set_color_mode(mode)
        assert len(view.scatter.data) == FACES and all(view.scatter.data["brush"] != None)  # noqa: E711
        assert view.legend_names() == [name for name, _ in colors.legend], mode
    label_colors = color_points(data, "label")
    names = [name for name, _ in label_colors.legend]
    assert names[:7] == [f"{c} ({int((data.labels == i).sum())})" for i, c in enumerate(class_names())]
    assert names[7].startswith("unlabeled")
    # Labeled faces are drawn last, so unlabeled ones never hide them.
    order = label_colors.order
    assert (data.labels[order][-int((data.labels >= 0).sum()) :] >= 0).all()


def test_disagreement_of_a_single_level_run_says_so(window):
    from app.map_colors import color_points

    data = window.map_view.data
    single = RunMap(
        data.run_id,
        data.method,
        data.methods,
        data.ids,
        data.xy,
        data.labels,
        data.pseudo,
        data.confidence,
        {"semantic": data.levels["semantic"]},
        None,
    )
    colors = color_points(single, "disagreement")
    assert len(colors.brushes) == FACES and "one level" in colors.note


def test_rectangle_and_lasso_filter_the_grid_to_exactly_the_faces_inside(qtbot, run_project, window):
    ids = put_on_grid(run_project)
    window.state.set_current_run(1, force=True)
    view, model = window.map_view, window.model
    assert model.rowCount() == FACES
    with qtbot.waitSignal(view.selection_changed) as signal:
        view.select_rect((1.5, 0.5), (4.5, 2.5))
    expected = ids_where(ids, lambda x, y: 2 <= x <= 4 and 1 <= y <= 2)
    assert signal.args[0] == expected and len(expected) == 6
    assert {model.face(r).id for r in range(model.rowCount())} == expected
    assert "selected on the map" in window.counts_label.full_text()
    assert len(view.selection_rings.data) == 6
    triangle = [(-0.5, -0.5), (6.7, -0.5), (-0.5, 6.7)]
    view.select_lasso(np.array(triangle))
    expected = ids_where(ids, lambda x, y: x + y <= 6)
    assert {model.face(r).id for r in range(model.rowCount())} == expected
    # The panel's filters still apply on top of the map's selection.
    window.panel.split_combo.setCurrentIndex(window.panel.split_combo.findData("val"))
    faces = window.state.faces(window.model.face_filter)
    assert {model.face(r).id for r in range(model.rowCount())} == expected & {f.id for f in faces}
    window.panel.split_combo.setCurrentIndex(window.panel.split_combo.findData(None))
    view.clear_selection()
    assert model.rowCount() == FACES and model.id_filter is None
    assert "selected on the map" not in window.counts_label.full_text()


def test_dragging_a_rectangle_with_the_mouse_selects(qtbot, run_project, window):
    ids = put_on_grid(run_project)
    window.state.set_current_run(1, force=True)
    window.show()
    qtbot.waitExposed(window)
    view = window.map_view
    view.tool_buttons.buttons()[1].click()  # Rectangle
    assert view.view.tool == "rect"

    def screen(x: float, y: float) -> QPoint:
        return view.plot.mapFromScene(view.view.mapViewToScene(QPointF(x, y)))

    start, end = screen(-0.2, -0.2), screen(2.5, 1.5)  # inside the view (autoRange pads 4%)
    with qtbot.waitSignal(view.selection_changed, timeout=5000) as signal:
        drag(qtbot, view.plot.viewport(), start, end)
    assert signal.args[0] == ids_where(ids, lambda x, y: x <= 2 and y <= 1)


def drag(qtbot, widget, start: QPoint, end: QPoint, steps: int = 8) -> None:
    """A left-button drag. Sent as events because QTest's mouseMove carries no pressed buttons."""

    def send(kind, pos: QPoint, button, buttons) -> None:
        QApplication.sendEvent(
            widget,
            QMouseEvent(
                kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons, Qt.KeyboardModifier.NoModifier
            ),
        )

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    send(QEvent.Type.MouseButtonPress, start, left, left)
    for t in np.linspace(0.1, 1.0, steps):
        qtbot.wait(20)  # pyqtgraph drops mouse moves closer than 10 ms apart
        send(
            QEvent.Type.MouseMove,
            QPoint(int(start.x() + t * (end.x() - start.x())), int(start.y() + t * (end.y() - start.y()))),
            none,
            left,
        )
    qtbot.wait(20)
    send(QEvent.Type.MouseButtonRelease, end, left, none)


def test_a_new_label_recolours_the_map_without_reloading_the_run(run_project, window, monkeypatch):
    view = window.map_view
    data = view.data
    index = int(np.flatnonzero(data.labels < 0)[0])
    face_id = int(data.ids[index])
    view.select_rect((-1e9, -1e9), (1e9, 1e9))
    with Project.open(run_project) as project, project.session() as session:
        session.add(Label(image_id=face_id, label="surprise", source="annotator"))
    monkeypatch.setattr(window.state, "run_map", lambda *a, **k: pytest.fail("the run was reloaded"))
    window.state.notify_contents_changed()
    assert view.data is data and view.data.labels[index] == class_names().index("surprise")
    legend = view.legend_names()
    assert f"surprise ({int((data.labels == 0).sum())})" in legend
    assert view.selected is not None and len(view.selected) == FACES  # the selection stays


def test_grid_selection_is_ringed_on_the_map(window):
    grid, model, view = window.grid, window.model, window.map_view
    selection = grid.selectionModel()
    for row in (0, 3, 5):
        selection.select(model.index(row), QItemSelectionModel.SelectionFlag.Select)
    assert sorted(view.highlighted_ids()) == sorted(model.face(r).id for r in (0, 3, 5))
    assert len(view.highlight_rings.data) == 3
    selection.clearSelection()
    assert len(view.highlight_rings.data) == 0


def test_hover_shows_the_face_with_its_label_and_pseudo_label(qtbot, window):
    window.show()
    qtbot.waitExposed(window)
    view = window.map_view
    data = view.data
    index = int(np.flatnonzero(data.labels >= 0)[0])
    scene_pos = view.view.mapViewToScene(QPointF(*data.xy[index]))
    view._mouse_moved((scene_pos,))
    assert view.hovered is not None
    shown = view.hovered
    assert np.allclose(data.xy[shown], data.xy[index])  # the nearest point (a twin may share its place)
    text = view.hover_card.text.text()
    names = class_names()
    assert f"label: {names[data.labels[shown]]}" in text and f"pseudo-label: {names[data.pseudo[shown]]}" in text
    assert "level disagreement" in text and view.hover_card.isVisible()
    qtbot.waitUntil(
        lambda: view.hover_card.image.pixmap() is not None and not view.hover_card.image.pixmap().isNull(),
        timeout=10_000,
    )
    # Far from every point: the card goes away.
    corner = view.view.sceneBoundingRect().topLeft()
    view._mouse_moved((corner + QPointF(1, 1),))
    assert view.hovered is None and not view.hover_card.isVisible()


def test_empty_states_say_what_to_do(qtbot, tmp_path):
    from app.main_window import MainWindow

    win = MainWindow(dialogs=FakeDialogs())
    qtbot.addWidget(win)
    view = win.map_view
    assert view.pages.currentWidget() is view.empty and "Open a project" in view.empty.text()
    assert win.open_project(make_demo(tmp_path / "fresh"))
    assert view.pages.currentWidget() is view.empty
    assert "Train one in the Training panel" in view.empty.text()
    assert win.training.curves_caption.text().startswith("No run yet")
    win.close()


def test_a_run_without_a_map_says_so(qtbot, run_project, window):
    with Project.open(run_project) as project, project.session() as session:
        session.add(Run(algorithm="fixmatch", encoder="tiny", status="cancelled"))
    window.state.set_current_run(2)
    view = window.map_view
    assert view.pages.currentWidget() is view.empty
    assert "Run 2 (cancelled) has no map" in view.empty.text()
    with Project.open(run_project) as project, project.session() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 2


def test_thirty_thousand_points_pan_and_lasso(qtbot, window):
    """30,000 points draw in every colouring while panned, and a lasso selects exactly the points
    inside it (bench/map_timings.py measures the frame times)."""
    n = 30_000
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(7, 2)) * 6
    classes = rng.integers(0, 7, n)
    levels = {name: rng.dirichlet(np.ones(7), n).astype(np.float32) for name in ("semantic", "text", "instance")}
    data = RunMap(
        run_id=1,
        method="umap",
        methods=("umap", "pca"),
        ids=np.arange(1, n + 1),
        xy=(centers[classes] + rng.normal(size=(n, 2))).astype(np.float32),
        labels=np.where(rng.random(n) < 0.1, classes, -1).astype(np.int16),
        pseudo=classes.astype(np.int16),
        confidence=rng.uniform(0.2, 1, n).astype(np.float32),
        levels=levels,
        disagreement=level_disagreement(levels),
    )
    window.resize(1600, 1000)
    window.show()
    qtbot.waitExposed(window)
    view = window.map_view
    view.show_map(data)
    plot = view.plot
    for mode in ("label", "confidence"):
        view.set_color_mode(mode)
        before = view.view.viewRange()
        view.view.translateBy(x=0.5, y=0.3)
        after = view.view.viewRange()
        assert after[0][0] == pytest.approx(before[0][0] + 0.5) and after[1][0] == pytest.approx(before[1][0] + 0.3)
        assert len(view.scatter.data) == n
        assert not plot.grab().isNull()
    # A lasso over 30,000 points selects exactly the points inside it.
    polygon = np.array([(-20.0, -20.0), (20.0, -20.0), (0.0, 20.0)])
    chosen = view.select_lasso(polygon)
    assert chosen == frozenset(data.ids[points_in_polygon(data.xy, polygon)].tolist()) and chosen


def test_a_running_runs_pca_map_is_previewed_until_the_run_ends(window):
    view, state = window.map_view, window.state
    state.set_current_run(None, force=True)
    assert view.pages.currentWidget() is view.empty
    # The worker wrote predictions and the PCA map and is computing UMAP: the panel hears of it.
    window.training._event(
        {"event": "map", "run": 1, "method": "pca", "final": False, "message": "the PCA map is written"}
    )
    assert view.pages.currentWidget() is view.map_page and len(view.scatter.data) == FACES
    assert "PCA preview" in view.info.text() and "still running" in view.info.text()
    window.training._event({"event": "map", "run": 1, "method": "umap", "final": True, "message": "done"})
    assert view.preview_run == 1, "the last map is no preview: the run's end brings it"
    state.run_finished.emit(1)  # ended without becoming current (failed or cancelled during UMAP)
    assert view.preview_run is None and view.pages.currentWidget() is view.empty
