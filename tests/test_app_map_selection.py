"""The map as an annotator reads it: a selection ring no class colour resembles, unlabeled faces
unlike neutral ones, the colour mode kept across restarts, and a map selection that narrows the
review queue (with a banner saying so) as it narrows the All faces grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtGui import QColor

from app import settings as studio
from app.embedding_map import PLOT_BACKGROUND
from app.map_colors import (
    COLORMAPS,
    POINT_SIZE,
    SELECTION,
    UNLABELED,
    color_distance,
    color_points,
    seen_on,
)
from core.classes import expression_classes
from tests.studio_runs import make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

OTHER_COLOUR = 25  # CIE76: above this two colours read as different colours, not shades


@pytest.fixture(scope="module")
def run_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("selection") / "demo", runs=("sitfer",))


@pytest.fixture
def window(qtbot, run_template, tmp_path):
    win = studio_window(qtbot, project_copy(run_template, tmp_path), FakeDialogs())
    yield win
    win.close()


def class_colours() -> dict[str, QColor]:
    return {c.name: QColor(c.color) for c in expression_classes()}


def colormap_colours(name: str) -> list[QColor]:
    table = pg.colormap.get(name).getLookupTable(0.0, 1.0, 32, alpha=False)
    return [QColor(int(r), int(g), int(b)) for r, g, b in table]


def queue_ready(review) -> bool:
    return review.answered is not None and review.answered == review.request() and not review.building


def test_the_selection_ring_wears_a_colour_no_class_or_colour_map_comes_near(window):
    for name, colour in class_colours().items():
        assert color_distance(SELECTION, colour) > 2 * OTHER_COLOUR, name
    for mode, colormap in COLORMAPS.items():
        assert min(color_distance(SELECTION, c) for c in colormap_colours(colormap)) > OTHER_COLOUR, mode
    view = window.map_view
    assert view.selection_rings.opts["pen"].color() == SELECTION
    assert view.view.outline.pen().color() == SELECTION  # the rectangle or lasso being drawn


def test_unlabeled_faces_are_small_dim_dots_that_no_class_colour_resembles(window):
    background = QColor(PLOT_BACKGROUND)
    for name, colour in class_colours().items():
        # Stacked in a dense cluster the dots reach their opaque colour; alone they show blended.
        assert color_distance(UNLABELED, colour) > OTHER_COLOUR, name
        assert color_distance(seen_on(UNLABELED, background), colour) > OTHER_COLOUR, name
    data = window.map_view.data
    labeled = data.labels >= 0
    assert labeled.any() and (~labeled).any()
    colors = color_points(data, "label")
    assert colors.sizes is not None
    assert set(colors.sizes[labeled].tolist()) == {POINT_SIZE}
    assert colors.sizes[~labeled].max() < POINT_SIZE
    assert {b.color().rgba() for b in colors.brushes[~labeled]} == {UNLABELED.rgba()}
    drawn = window.map_view.scatter.data["size"]
    assert sorted(drawn.tolist()) == sorted(colors.sizes.tolist())


def test_the_colour_mode_is_kept_across_a_restart(qtbot, window, run_template, tmp_path):
    window.map_view.set_color_mode("confidence")
    window.close()
    again = studio_window(qtbot, project_copy(run_template, tmp_path / "again"), FakeDialogs())
    assert again.map_view.color_mode() == "confidence"
    assert "0.14" in " ".join(again.map_view.legend_names())  # drawn that way, not only chosen
    again.settings.setValue(studio.KEY_MAP_COLOR, "rainbow")  # a hand-edited settings.ini
    again.close()
    third = studio_window(qtbot, project_copy(run_template, tmp_path / "third"), FakeDialogs())
    assert third.map_view.color_mode() == "label"
    third.close()


def test_the_review_queue_ranks_only_the_map_selection_and_says_so(qtbot, window):
    review, view = window.review, window.map_view
    window.show()
    window.show_review()
    qtbot.waitUntil(lambda: queue_ready(review), timeout=20_000)
    everyone = {review.model.face(r).id for r in range(review.model.rowCount())}
    assert not review.banner.isVisible()
    data = view.data
    left = data.xy[:, 0] <= np.median(data.xy[:, 0])
    selected = view.select_rect(
        (data.xy[:, 0].min() - 1, data.xy[:, 1].min() - 1), (np.median(data.xy[:, 0]), data.xy[:, 1].max() + 1)
    )
    assert selected == set(data.ids[left].tolist())
    qtbot.waitUntil(lambda: queue_ready(review), timeout=20_000)
    ranked = {review.model.face(r).id for r in range(review.model.rowCount())}
    assert ranked and ranked <= selected and ranked < everyone
    assert review.request().filters.face_ids == selected
    assert review.banner.isVisible()
    assert review.banner.text.text().startswith(f"Map selection: {len(selected)} faces")
    # The banner's Clear clears the map's selection: grid, map and queue show every face again.
    review.banner.clear_button.click()
    assert view.selected is None and window.model.id_filter is None
    qtbot.waitUntil(lambda: queue_ready(review), timeout=20_000)
    assert review.request().filters.face_ids is None and not review.banner.isVisible()
    assert {review.model.face(r).id for r in range(review.model.rowCount())} == everyone


def test_another_run_on_the_map_frees_the_grid_and_the_queue_from_the_old_selection(window):
    view = window.map_view
    view.select_rect((-1e9, -1e9), (0.0, 1e9))
    assert window.model.id_filter is not None and window.review.map_selection is not None
    window.state.set_current_run(window.state.current_run, force=True)  # the map is drawn anew
    assert view.selected is None
    assert window.model.id_filter is None and window.review.map_selection is None
    assert not window.review.banner.isVisible()
