"""The studio for a team (issue 24), offscreen: the review queue's "To vote on (mine)" faces for
the annotator in the status bar (a team project starts there; another annotator rebuilds it),
adjudication in the adjudication queue (the keys give the final word, the banner and the status
bar say so, Ctrl+Z takes it back, nothing else adjudicates), the face details' votes, and the
live updates: another process's `label` and another connection's undo reach the grid and the
details within the poll interval, on SQLite and on PostgreSQL. Assertions read the database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt
from PySide6.QtGui import QTextDocument
from sqlalchemy import select

from app.detail_panel import votes_text
from app.review_queue import TO_VOTE
from app.team_poller import POLL_MS
from core.active import QueueFilters, build_queue
from core.classes import expression_classes
from core.ingest.demo import create_demo_project
from core.labeling import set_label, undo
from core.store.models import Correction, Image, Label
from core.store.project import Project
from core.team.assignment import TeamSettings, in_overlap, write_settings
from core.team.votes import Vote
from tests.studio_runs import SMALL_DEMO, make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

REPO = Path(__file__).resolve().parents[1]
RUN = 1  # the template's sitfer run
KEY_OF = {cls.name: cls.key for cls in expression_classes()}
LIVE_TIMEOUT_MS = 2 * POLL_MS + 3000  # a poll interval, the read, and a loaded machine's slack


@pytest.fixture(scope="module")
def team_template(tmp_path_factory) -> Path:
    """The small demo with a trained run, every face in the overlap (3 votes each), and votes on
    three unlabeled train faces: ana and ben split on the first (fear / surprise), ana and cy
    against ben on the second, ana and ben agree on the third."""
    root = make_demo(tmp_path_factory.mktemp("team") / "demo", runs=("sitfer",))
    with Project.open(root) as project:
        with project.session() as s:
            write_settings(s, TeamSettings(overlap_share=1.0, overlap_votes=3))
            labeled = select(Label.image_id)
            unlabeled = select(Image.id).where(Image.split == "train", Image.id.not_in(labeled)).order_by(Image.id)
            split, two_to_one, agreed = list(s.scalars(unlabeled))[:3]
        for face, votes in (
            (split, {"ana": "fear", "ben": "surprise"}),
            (two_to_one, {"ana": "happiness", "ben": "sadness", "cy": "happiness"}),
            (agreed, {"ana": "anger", "ben": "anger"}),
        ):
            for annotator, label in votes.items():
                set_label(project, face, label, annotator)
    return root


@pytest.fixture
def team_project(team_template, tmp_path) -> Path:
    return project_copy(team_template, tmp_path)


def faces_voted(root: Path) -> tuple[int, int, int]:
    with Project.open(root) as project, project.session() as s:
        ids = sorted(set(s.scalars(select(Correction.image_id))))
    return ids[0], ids[1], ids[2]


def open_window(qtbot, root: Path, annotator: str):
    window = studio_window(qtbot, root, FakeDialogs())
    window.labeling.set_annotator(annotator)
    window.show()
    qtbot.waitExposed(window)
    return window


def wait_for_queue(qtbot, window) -> list[int]:
    review = window.review
    qtbot.waitUntil(lambda: not review.building and review.answered == review.request(), timeout=10_000)
    return [review.model.face(row).id for row in range(review.model.rowCount())]


def core_queue(root: Path, strategy: str, filters: QueueFilters) -> list[int]:
    with Project.open(root) as project:
        return [item.face_id for item in build_queue(project, RUN, strategy, 50, filters=filters)]


def label_of(root: Path, face_id: int) -> str | None:
    with Project.open(root) as project, project.session() as s:
        row = s.get(Label, face_id)
        return None if row is None else row.label


def newest_correction(root: Path) -> Correction:
    with Project.open(root) as project, project.session() as s:
        return s.scalars(select(Correction).order_by(Correction.id.desc()).limit(1)).one()


def status(window) -> str:
    return window.statusBar().currentMessage()


def plain(html: str) -> str:
    """Rich text as the label shows it (no-break spaces as spaces)."""
    document = QTextDocument()
    document.setHtml(html)
    return document.toPlainText().replace("\xa0", " ")


# -- the to-vote queue ---------------------------------------------------------------------------
def test_a_team_project_starts_on_the_annotators_to_vote_queue(qtbot, team_project, team_template, tmp_path):
    split, two_to_one, agreed = faces_voted(team_project)
    window = open_window(qtbot, team_project, "ana")
    review = window.review
    window.show_review()
    shown = wait_for_queue(qtbot, window)
    assert review.labels_combo.currentData() == TO_VOTE and review.labels_combo.currentText() == "To vote on (mine)"
    assert review.request().filters == QueueFilters(labels=TO_VOTE, annotator="ana")
    assert shown == core_queue(team_project, "margin", QueueFilters(labels=TO_VOTE, annotator="ana"))
    assert not {split, two_to_one, agreed} & set(shown)  # ana voted on all three
    # Another annotator: the queue is rebuilt for them (the split face's third vote is wanted).
    window.labeling.set_annotator("dee")
    shown = wait_for_queue(qtbot, window)
    assert review.request().filters.annotator == "dee"
    assert shown == core_queue(team_project, "margin", QueueFilters(labels=TO_VOTE, annotator="dee"))
    assert split in shown and agreed in shown and two_to_one not in shown  # it has its three votes
    # A queue of everyone's faces does not depend on the annotator.
    review.set_choice(review.labels_combo, "unlabeled")
    wait_for_queue(qtbot, window)
    assert review.request().filters.annotator is None
    # Without an overlap the queue starts as it always did, on the unlabeled faces.
    solo = project_copy(team_template, tmp_path / "solo")
    with Project.open(solo) as project, project.session() as s:
        write_settings(s, TeamSettings(overlap_share=0.0))
    review.set_choice(review.labels_combo, TO_VOTE)
    assert window.open_project(solo)
    wait_for_queue(qtbot, window)
    assert review.labels_combo.currentData() == "unlabeled"
    window.close()


def test_faces_a_teammate_settles_meanwhile_are_passed_by(qtbot, team_project):
    """Ben's votes reach ana's to-vote queue: the face that needed one vote is passed by when ana
    moves on; the overlap face still needs hers (2 votes wanted) and is not."""
    with Project.open(team_project) as project, project.session() as s:
        write_settings(s, TeamSettings(overlap_share=0.3, overlap_votes=2))
    window = open_window(qtbot, team_project, "ana")
    review = window.review
    window.show_review()
    shown = np.array(wait_for_queue(qtbot, window))
    qtbot.waitUntil(lambda: window.team_poller.watch is not None, timeout=5000)
    shared = in_overlap(shown, 0.3)
    # A face to label, then one needing one vote, then one of the overlap, then any.
    at = next(i for i in range(len(shown) - 3) if not shared[i + 1] and shared[i + 2])
    single, overlap, after = (int(f) for f in shown[at + 1 : at + 4])
    with Project.open(team_project) as other:
        for face in (single, overlap):
            set_label(other, face, "surprise", "ben")
    qtbot.waitUntil(lambda: single in review.model.settled, timeout=LIVE_TIMEOUT_MS)
    assert overlap not in review.model.settled
    review.grid.select_row(at)
    qtbot.keyClick(review.grid, KEY_OF["fear"])
    assert review.grid.current_face().id == overlap, "ben settled the next face: it is passed by"
    qtbot.keyClick(review.grid, KEY_OF["fear"])
    assert review.grid.current_face().id == after
    with Project.open(team_project) as project, project.session() as s:
        ana = set(s.scalars(select(Correction.image_id).where(Correction.annotator == "ana")))
    assert {int(shown[at]), overlap} <= ana and single not in ana
    window.close()


# -- adjudication --------------------------------------------------------------------------------
def test_the_adjudication_queue_keys_give_the_final_word_and_undo_takes_it_back(qtbot, team_project):
    split, two_to_one, _agreed = faces_voted(team_project)
    window = open_window(qtbot, team_project, "lead")
    review, detail, labeling = window.review, window.detail, window.labeling
    window.show_review()
    wait_for_queue(qtbot, window)
    assert not review.adjudication_banner.isVisible() and not labeling.adjudicating()
    review.set_strategy("adjudication")
    shown = wait_for_queue(qtbot, window)
    assert shown == core_queue(team_project, "adjudication", QueueFilters()) == [split, two_to_one]
    assert review.adjudication_banner.isVisible() and labeling.adjudicating()
    assert "Adjudicating" in review.adjudication_banner.text.text() and "lead" in review.adjudication_banner.text.text()
    # The details show the split face's votes.
    assert detail.face_id == split
    votes = plain(detail.votes_label.text())
    assert "fear — ana" in votes and "surprise — ben" in votes and "(disputed)" in votes
    assert label_of(team_project, split) == "surprise"  # a tie: the newest vote
    grid = review.grid
    qtbot.keyClick(grid, KEY_OF["fear"])
    row = newest_correction(team_project)
    assert (row.image_id, row.annotator, row.new_label, row.adjudicated) == (split, "lead", "fear", True)
    assert label_of(team_project, split) == "fear"
    assert status(window).startswith(f"Adjudicated by lead: face {split}: surprise -> fear")
    assert grid.current_face().id == two_to_one  # moved on, as a label does
    # Backspace cannot adjudicate, nor can a key on several faces at once.
    qtbot.keyClick(grid, Qt.Key.Key_Backspace)
    assert "An adjudication gives the face a class" in status(window)
    grid.selectionModel().select(
        QItemSelection(review.model.index(0), review.model.index(1)), QItemSelectionModel.SelectionFlag.Select
    )
    qtbot.keyClick(grid, KEY_OF["sadness"])
    assert "one face at a time" in status(window)
    assert newest_correction(team_project).id == row.id and label_of(team_project, two_to_one) == "happiness"
    grid.clearSelection()
    # Back on the split face: settled.
    grid.select_row(0)
    votes = plain(detail.votes_label.text())
    assert "Adjudicated" in votes and "fear — lead" in votes and "(disputed)" not in votes
    # Ctrl+Z takes the adjudication back: the tie decides again.
    labeling.undo()
    assert label_of(team_project, split) == "surprise"
    assert status(window).startswith(f"Undone adjudication: face {split}: fear -> surprise")
    qtbot.waitUntil(lambda: detail.face_id == split and "(disputed)" in plain(detail.votes_label.text()), timeout=2000)
    # The All faces grid's keys are votes, whatever the queue shows.
    window.center_tabs.setCurrentWidget(window.grid_area)
    assert not labeling.adjudicating()
    window.close()


def test_the_votes_line_says_who_voted_what_and_whether_they_agree():
    def vote(annotator, label, adjudicated=False, second=0):
        from datetime import UTC, datetime

        return Vote(1, annotator, label, adjudicated, datetime(2024, 5, 1, 12, 0, second, tzinfo=UTC))

    assert votes_text([vote("ana", "fear")], disputed=False) == ""  # the label's line says who
    agree = plain(votes_text([vote("ana", "fear"), vote("ben", "fear")], disputed=False))
    assert "fear — ana, ben" in agree and "(agree)" in agree
    split = plain(
        votes_text([vote("ana", "fear"), vote("ben", "surprise"), vote("cy", "fear"), vote("dee", None)], True)
    )
    assert split.index("fear — ana, cy") < split.index("surprise — ben") < split.index("no label — dee")
    assert "(disputed)" in split
    settled = plain(votes_text([vote("ana", "fear"), vote("ben", "surprise"), vote("lead", "surprise", True)], False))
    assert "Adjudicated" in settled and "surprise — lead" in settled and "disputed" not in settled
    assert "<b>x" not in votes_text([vote("<b>x", "fear"), vote("y", "fear")], False)  # names are escaped
    assert "<b>x, y" in plain(votes_text([vote("<b>x", "fear"), vote("y", "fear")], False))


# -- live updates ------------------------------------------------------------------------------
def grid_label(window, face_id: int) -> str | None:
    model = window.model
    row = model.row_of(face_id)
    return None if row is None else model.face(row).label


def test_another_process_label_and_another_connections_undo_appear_live(qtbot, team_project):
    window = open_window(qtbot, team_project, "ana")
    poller = window.team_poller
    assert poller.active
    qtbot.waitUntil(lambda: poller.watch is not None, timeout=5000)  # it has taken stock
    with Project.open(team_project) as project, project.session() as s:
        unlabeled = select(Image.id).where(Image.split == "train", Image.id.not_in(select(Label.image_id)))
        face = s.scalars(unlabeled).first()
    window.grid.select_row(window.model.row_of(face))
    assert window.detail.face_id == face and grid_label(window, face) is None
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "label", str(team_project), str(face), "fear", "--annotator", "ben"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    qtbot.waitUntil(lambda: grid_label(window, face) == "fear", timeout=LIVE_TIMEOUT_MS)
    assert status(window) == "ben: 1 label"
    qtbot.waitUntil(lambda: "by ben" in window.detail.label_text.text(), timeout=2000)
    assert window.detail.face_id == face and "fear" in window.detail.label_text.text()
    # An undo logs no row: it is seen all the same.
    with Project.open(team_project) as other:
        undo(other, "ben")
    qtbot.waitUntil(lambda: grid_label(window, face) is None, timeout=LIVE_TIMEOUT_MS)
    assert status(window) == "ben: 1 undone or redone"
    # The window's own label is not announced again.
    qtbot.keyClick(window.grid, KEY_OF["sadness"])
    assert label_of(team_project, face) == "sadness"
    watched = poller.watch
    qtbot.waitUntil(lambda: poller.watch is not watched and not poller.runner.busy, timeout=LIVE_TIMEOUT_MS)
    assert "ana:" not in status(window)
    # No project, no polling; closing the window stops it.
    window.state.close()
    assert not poller.active
    assert window.open_project(team_project) and poller.active
    window.close()
    assert not poller.active


def test_live_updates_on_a_postgresql_project(qtbot, tmp_path, postgres_url):
    root = tmp_path / "shared"
    Project.create(root, database_url=postgres_url).close()
    create_demo_project(root, SMALL_DEMO)[0].close()
    window = open_window(qtbot, root, "ana")
    qtbot.waitUntil(lambda: window.team_poller.watch is not None, timeout=5000)
    with Project.open(root) as other:  # another annotator's connection to the server
        with other.session() as s:
            face = s.scalars(select(Image.id).where(Image.id.not_in(select(Label.image_id)))).first()
        set_label(other, face, "surprise", "ben")
    qtbot.waitUntil(lambda: grid_label(window, face) == "surprise", timeout=LIVE_TIMEOUT_MS)
    assert status(window) == "ben: 1 label"
    window.close()
