"""core.studio_api: the studio's views' one door into a project, without Qt. Every label change
says which faces it changed and whether the annotator can undo or redo now; the queries answer
what the views read (faces, runs, evidence, the queue). (tests/test_layering.py checks that it
imports no Qt, and that app/ opens no session of its own.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core import labeling
from core.active import QueueFilters
from core.store.models import RUN_CANCELLED, RUN_FAILED, Image, Run
from core.store.project import Project
from core.studio_api import StudioApi
from tests.studio_runs import FACES, make_demo, project_copy

SITFER_RUN = 1


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("studio-api") / "demo", runs=("sitfer",))


@pytest.fixture
def api(template, tmp_path):
    with Project.open(project_copy(template, tmp_path)) as project:
        yield StudioApi(project)


def unlabeled_train(api: StudioApi, count: int) -> list[int]:
    return [face.id for face in api.faces.list(split="train", labeled=False)[:count]]


# -- undo and redo state ------------------------------------------------------------------------
def test_undo_state_follows_the_log_per_annotator(api):
    first, second = unlabeled_train(api, 2)
    assert labeling.undo_state(api.project, "ana") == labeling.UndoState(False, False)
    change = api.labeling.set_label(first, "fear", "ana")
    assert (
        change.kind == "label" and change.face_ids == (first,) and (change.can_undo, change.can_redo) == (True, False)
    )
    assert not labeling.can_undo(api.project, "bo")  # bo has nothing of his own to undo
    change = api.labeling.undo("ana")
    assert change.kind == "undo" and change.face_ids == (first,) and (change.can_undo, change.can_redo) == (False, True)
    change = api.labeling.redo("ana")
    assert change.kind == "redo" and (change.can_undo, change.can_redo) == (True, False)
    api.labeling.undo("ana")
    # A new correction empties ana's redo stack, as undo/redo themselves see it.
    change = api.labeling.set_label(second, "anger", "ana")
    assert (change.can_undo, change.can_redo) == (True, False)
    assert labeling.redo(api.project, "ana") is None


def test_a_change_that_changes_nothing_says_so(api):
    [face] = unlabeled_train(api, 1)
    api.labeling.set_label(face, "fear", "ana")
    change = api.labeling.set_label(face, "fear", "ana")  # already fear
    assert change.kind == "none" and change.face_ids == () and change.step is None and change.can_undo
    assert api.labeling.redo("ana").kind == "none"
    assert api.labeling.undo("bo").kind == "none"


def test_bulk_steps_report_what_they_left_out(api):
    val = [face.id for face in api.faces.list(split="val")[:2]]
    train = unlabeled_train(api, 3)
    change = api.labeling.bulk_label(train + val, "sadness", "ana")
    assert change.kind == "label" and set(change.face_ids) == set(train)
    assert set(change.step.left_out.val_test) == set(val) and change.can_undo
    assert api.labeling.selection_summary(train + val).val_test == 2
    undone = api.labeling.undo("ana")
    assert set(undone.face_ids) == set(train) and undone.can_redo


def test_undo_of_a_vote_another_vote_outweighs_touches_the_face_without_changing_its_label(api):
    [face] = unlabeled_train(api, 1)
    api.labeling.set_label(face, "fear", "ana")
    api.labeling.set_label(face, "anger", "bo")
    change = api.labeling.undo("ana")
    assert change.face_ids == (face,) and change.touched == (face,) and change.kind == "undo"
    assert [(c.old_label, c.new_label) for c in change.step.changes] == [("anger", "anger")]


def test_accept_suggestion_goes_through_the_api(api):
    [face] = unlabeled_train(api, 1)
    suggestion = api.labeling.suggestion_for(face, SITFER_RUN)
    change = api.labeling.accept_suggestion(face, "ana", SITFER_RUN)
    assert change.face_ids == (face,) and api.faces.by_ids([face])[face].label == suggestion.label


# -- queries ------------------------------------------------------------------------------------------
def test_face_queries(api):
    stats = api.faces.stats()
    assert stats["images"] == FACES
    counts = api.faces.train_counts()
    assert (counts.labeled, counts.unlabeled) == (14, 42)
    ids = [face.id for face in api.faces.list()]
    assert len(ids) == FACES
    assert set(api.faces.by_ids(ids + list(range(10_000, 11_000)))) == set(ids)  # several queries' worth of ids
    labels = api.faces.labels_of(ids[:5])
    assert len(labels) == 5
    assert api.faces.labeled_today() == 0
    api.labeling.set_label(unlabeled_train(api, 1)[0], "fear", "ana")
    assert api.faces.labeled_today() == 1


def test_run_queries(api):
    assert api.runs.has_finished_run() and api.runs.to_show() == SITFER_RUN
    [summary] = api.runs.summaries()
    assert summary.id == SITFER_RUN and summary.status == "finished"
    assert api.runs.size(SITFER_RUN) == FACES
    assert "val_accuracy" in api.runs.metrics(SITFER_RUN)
    assert len(api.runs.map(SITFER_RUN)) == FACES
    assert not api.runs.resumable(SITFER_RUN)  # finished
    refit = api.runs.refit_change(SITFER_RUN, "ana")
    assert refit.kind == "refit" and refit.run_id == SITFER_RUN and refit.face_ids == ()


def test_only_a_cancelled_or_failed_run_with_its_checkpoint_is_resumable(api):
    project = api.project
    with project.session() as session:
        finished = session.get(Run, SITFER_RUN)
        checkpoint = finished.checkpoint
        for status in (RUN_CANCELLED, RUN_FAILED):
            session.add(
                Run(algorithm="sitfer", encoder="tiny", mode="head", config={}, status=status, checkpoint=checkpoint)
            )
        session.add(
            Run(
                algorithm="sitfer",
                encoder="tiny",
                mode="head",
                config={},
                status=RUN_CANCELLED,
                checkpoint="checkpoints/missing.pt",
            )
        )
    assert [api.runs.resumable(run) for run in (2, 3, 4)] == [True, True, False]
    assert not api.runs.resumable(99)


def test_evidence_and_queue(api):
    face = api.faces.list(split="train", labeled=False)[0].id
    thresholds = api.evidence.thresholds(SITFER_RUN)
    index = api.evidence.neighbour_index(SITFER_RUN)
    view = api.evidence.face(SITFER_RUN, face, thresholds, index, k=3)
    assert view.evidence.face_id == face and view.evidence.fused is not None
    assert len(view.neighbours) == 3 and all(n.label for n in view.neighbours)
    assert api.evidence.face(SITFER_RUN, face).neighbours is None  # no index: none yet
    items = api.evidence.queue(SITFER_RUN, "margin", 5, "train", QueueFilters())
    assert len(items) == 5 and [item.rank for item in items] == [1, 2, 3, 4, 5]
    with api.project.session() as session:
        gone = session.scalar(select(Image.id).order_by(Image.id.desc()).limit(1))
    assert api.evidence.face(SITFER_RUN, gone + 1000).evidence is None
