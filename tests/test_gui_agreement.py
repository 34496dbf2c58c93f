"""The studio's agreement (issue 24): the Agreement dock on hand-made votes (the figures the
`agreement` command gives, the chosen annotator's confusion as a heat table, a refresh after a
correction, words when there is nothing to show), and the map's "Vote entropy" colouring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtGui import QColor

from app.agreement_panel import ANNOTATOR_COLUMNS, NO_PROJECT, NO_VOTES, AgreementPanel, heat
from app.map_colors import MISSING
from app.project_state import ProjectState
from core.classes import class_names
from core.labeling import adjudicate, set_label
from core.store.models import Image
from core.store.project import Project
from core.team.agreement import compute_agreement
from core.team.votes import load_votes
from tests.studio_runs import make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

HAPPY, SAD, FEAR, SURPRISE = "happiness", "sadness", "fear", "surprise"


def add_faces(project: Project, count: int) -> None:
    with project.session() as s:
        for i in range(1, count + 1):
            s.add(Image(id=i, path=f"{i}.png", content_hash=f"{i:064x}", width=48, height=48))


@pytest.fixture
def voted(tmp_path) -> Path:
    """Faces 1-6: ana and ben agree on 1-3, split on 4 (fear / surprise) and 5; cy votes on 1 and 6;
    lead adjudicates 4."""
    project = Project.create(tmp_path / "voted")
    add_faces(project, 6)
    for face, label in ((1, HAPPY), (2, SAD), (3, SAD), (4, FEAR), (5, HAPPY)):
        set_label(project, face, label, "ana")
    for face, label in ((1, HAPPY), (2, SAD), (3, SAD), (4, SURPRISE), (5, SAD)):
        set_label(project, face, label, "ben")
    set_label(project, 1, HAPPY, "cy")
    set_label(project, 6, FEAR, "cy")
    adjudicate(project, 4, FEAR, "lead")
    project.close()
    return tmp_path / "voted"


@pytest.fixture
def panel(qtbot, voted):
    state = ProjectState()
    widget = AgreementPanel(state)
    qtbot.addWidget(widget)
    widget.resize(460, 1100)
    widget.show()
    state.open(voted)
    qtbot.waitUntil(lambda: widget.report is not None and widget.progress.text() == "", timeout=10_000)
    yield widget
    widget.shutdown()
    state.close()


def cell(table, row: int, column: int) -> str:
    item = table.item(row, column)
    return item.text() if item is not None else ""


def test_the_panel_shows_what_the_command_computes(panel, tmp_path):
    with panel.state.project.session() as s:
        expected = compute_agreement(load_votes(s), {1: HAPPY, 2: SAD, 3: SAD, 4: FEAR, 5: SAD, 6: FEAR})
    report = panel.report
    assert report.krippendorff_alpha == pytest.approx(expected.krippendorff_alpha)
    assert report.fleiss_kappa == pytest.approx(expected.fleiss_kappa)
    assert f"Krippendorff's alpha {expected.krippendorff_alpha:.3f}" in panel.summary.text()
    assert f"Fleiss' kappa {expected.fleiss_kappa:.3f}" in panel.summary.text()
    assert panel.pages.currentWidget() is panel.report_page
    # Per class: the seven classes in order, with their vote counts.
    assert [cell(panel.class_table, r, 0) for r in range(7)] == class_names()
    happy = class_names().index(HAPPY)
    assert cell(panel.class_table, happy, 1) == "4"  # ana 1, 5; ben 1; cy 1
    # Annotators: everyone, the adjudicator with no vote but an adjudication.
    names = [cell(panel.annotator_table, r, 0) for r in range(panel.annotator_table.rowCount())]
    assert names == ["ana", "ben", "cy", "lead"]
    columns = list(ANNOTATOR_COLUMNS)
    ana = columns.index("Accuracy")
    by_name = {a.name: a for a in expected.annotators}
    assert cell(panel.annotator_table, 0, ana) == f"{100 * by_name['ana'].accuracy:.1f}%"
    assert cell(panel.annotator_table, 3, columns.index("Adj.")) == "1"
    # The confused pairs: fear / surprise (face 4) and happiness / sadness (face 5).
    pairs = {cell(panel.pair_table, r, 0) for r in range(panel.pair_table.rowCount())}
    assert pairs == {"surprise / fear", "happiness / sadness"}
    assert any("adjudication" in line for line in panel.notes.text().splitlines())
    panel.grab().save(str(tmp_path / "agreement_panel.png"))
    assert (tmp_path / "agreement_panel.png").stat().st_size > 10_000


def test_the_chosen_annotators_confusion_is_a_heat_table(panel):
    panel.annotator_table.selectRow(1)  # ben
    assert panel.chosen_annotator() == "ben"
    assert panel.confusion_title.text().startswith("ben's votes (rows)")
    table = panel.confusion_table
    names = class_names()
    sad = names.index(SAD)
    # ben voted sadness on 2, 3 and 5; the consensus is sadness on all three (5: ben's newer vote
    # won the 1-1 tie), so the row is one full cell.
    assert cell(table, sad, sad) == "3"
    assert table.item(sad, sad).background().color() == heat(1.0)
    assert table.item(sad, names.index(HAPPY)).background().color() == heat(0.0)
    assert heat(0.0) == QColor("#181b20") and heat(1.0) != heat(0.5) != heat(0.0)


def test_a_correction_refreshes_the_panel_and_keeps_the_chosen_annotator(qtbot, panel):
    panel.annotator_table.selectRow(1)
    before = panel.report.votes
    api = panel.state.api
    change = api.labeling.set_label(6, FEAR, "ben")
    panel.state.notify_labels_changed(change.face_ids)
    qtbot.waitUntil(lambda: panel.report.votes == before + 1, timeout=10_000)
    assert panel.chosen_annotator() == "ben"
    assert panel.report.faces_with_2plus_votes == 6


def test_the_panel_says_what_to_do_without_a_project_or_votes(qtbot, tmp_path):
    state = ProjectState()
    widget = AgreementPanel(state)
    qtbot.addWidget(widget)
    assert widget.pages.currentWidget() is widget.empty and widget.empty.text() == NO_PROJECT
    project = Project.create(tmp_path / "empty")
    add_faces(project, 2)
    project.close()
    state.open(tmp_path / "empty")
    qtbot.waitUntil(lambda: widget.report is not None, timeout=10_000)
    assert widget.empty.text() == NO_VOTES and widget.pages.currentWidget() is widget.empty
    widget.shutdown()
    state.close()


@pytest.fixture(scope="module")
def run_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("votes-map") / "demo", runs=("sitfer",))


def test_the_map_colours_by_vote_entropy_and_greys_faces_without_two_votes(qtbot, run_template, tmp_path):
    window = studio_window(qtbot, project_copy(run_template, tmp_path), FakeDialogs())
    view = window.map_view
    qtbot.waitUntil(lambda: view.data is not None, timeout=10_000)
    ids = [int(f) for f in view.data.ids[:3]]
    api = window.state.api
    for face, (a, b) in zip(ids, ((HAPPY, HAPPY), (HAPPY, SAD), (FEAR, FEAR)), strict=True):
        api.labeling.set_label(face, a, "ana")
        api.labeling.set_label(face, b, "ben")
    api.labeling.set_label(int(view.data.ids[3]), SAD, "ana")  # one vote: no entropy
    window.show()
    window.map_dock.raise_()
    view.set_color_mode("vote_entropy")
    qtbot.waitUntil(lambda: view._votes is not None and "counting" not in view.legend_names()[0], timeout=10_000)
    bits = view._vote_bits()
    assert bits[0] == 0.0 and bits[1] == pytest.approx(1.0) and bits[2] == 0.0
    assert np.isnan(bits[3:]).all()
    assert view.legend_names()[-1] == f"fewer than 2 votes ({len(view.data) - 3:,})"
    brushes = {int(i): b.color() for i, b in zip(view.data.ids, view._colors.brushes, strict=True)}
    assert brushes[ids[1]] != MISSING and brushes[ids[0]] != brushes[ids[1]]
    assert brushes[int(view.data.ids[3])] == MISSING
    assert "Vote entropy of 3 faces" in view.info.text()
    # A third vote on the split face is counted again once corrections pause.
    change = api.labeling.set_label(ids[1], HAPPY, "cy")
    window.state.notify_labels_changed(change.face_ids)
    third = -(2 / 3) * np.log2(2 / 3) - (1 / 3) * np.log2(1 / 3)
    qtbot.waitUntil(lambda: abs(view._vote_bits()[1] - third) < 1e-6, timeout=10_000)
    window.close()
