"""Labeling with an undoable, append-only corrections log: set, bulk, clear, accept, undo/redo
across restarts, the redo stack, several annotators, the schema migration, and the next
training run seeing the corrections."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from core import labeling
from core.labeling import LabelingError, accept_suggestion, bulk_label, clear_label, redo, set_label, undo
from core.store import db as store_db
from core.store.models import (
    RUN_FINISHED,
    SOURCE_ANNOTATOR,
    SOURCE_IMPORTED,
    Correction,
    HiddenTruth,
    Image,
    Label,
    Prediction,
    Run,
    RunLabel,
)
from core.store.project import Project

IMPORTED_AT = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def faces(store_project):
    """Faces 1-5 in train; face 1 carries an imported label (fear)."""
    project = store_project  # every test using it runs on SQLite and on PostgreSQL
    with project.session() as s:
        for i in range(1, 6):
            s.add(Image(id=i, path=f"{i}.png", content_hash=f"{i:064x}", width=48, height=48))
        s.flush()
        s.add(Label(image_id=1, label="fear", source=SOURCE_IMPORTED, updated_at=IMPORTED_AT))
    return project


def label_row(project, face_id):
    with project.session() as s:
        row = s.get(Label, face_id)
        return None if row is None else (row.label, row.source, row.annotator, row.updated_at)


def current(project, face_id):
    row = label_row(project, face_id)
    return row[0] if row else None


def log(project):
    with project.session() as s:
        return [
            (c.image_id, c.old_label, c.new_label, c.undone_at is not None)
            for c in s.scalars(select(Correction).order_by(Correction.id))
        ]


def test_set_label_logs_and_updates_in_one_step(faces):
    step = set_label(faces, 1, "Angry", "ana", suggestion="surprised")
    assert step.action == "label" and step.face_ids == [1] and step.batch_id is None
    assert step.changes[0].old_label == "fear" and step.changes[0].new_label == "anger"
    label, source, annotator, updated = label_row(faces, 1)
    assert (label, source, annotator) == ("anger", SOURCE_ANNOTATOR, "ana") and updated > IMPORTED_AT
    with faces.session() as s:
        row = s.scalar(select(Correction))
        assert (row.old_label, row.new_label, row.suggestion, row.annotator) == ("fear", "anger", "surprise", "ana")
        assert (row.old_source, row.old_annotator, row.old_updated_at) == (SOURCE_IMPORTED, None, IMPORTED_AT)
    assert set_label(faces, 1, "anger", "ana") is None  # her own vote again: nothing logged
    assert len(log(faces)) == 1
    agree = set_label(faces, 1, "anger", "ben")  # ben agrees: a vote of his own, the label stands
    assert [(c.old_label, c.new_label) for c in agree.changes] == [("anger", "anger")]
    assert "label stands" in agree.describe() and len(log(faces)) == 2


def test_unknown_label_face_run_and_annotator_are_refused(faces):
    with pytest.raises(
        LabelingError,
        match="unknown label 'joyful'; use one of: surprise, fear, disgust, happiness, sadness, anger, neutral",
    ):
        set_label(faces, 2, "joyful", "ana")
    with pytest.raises(LabelingError, match="there is no face 42, 43 in this project"):
        bulk_label(faces, [2, 42, 43], "fear", "ana")
    with pytest.raises(LabelingError, match="there is no run 9"):
        set_label(faces, 2, "fear", "ana", run_id=9)
    with pytest.raises(LabelingError, match="annotator name is needed"):
        set_label(faces, 2, "fear", "  ")
    assert log(faces) == [] and current(faces, 2) is None  # nothing half-done


def test_an_annotator_name_is_trimmed_and_refused_empty_or_too_long(faces):
    longest = "a" * labeling.MAX_ANNOTATOR_LENGTH
    assert labeling.check_annotator("  ana ") == "ana" and labeling.check_annotator(longest) == longest
    for empty in (None, "", "   "):
        with pytest.raises(LabelingError, match="annotator name is needed"):
            labeling.check_annotator(empty)
    too_long = longest + "b"
    with pytest.raises(
        LabelingError, match=f"at most {labeling.MAX_ANNOTATOR_LENGTH} characters .this one has {len(too_long)}."
    ):
        labeling.check_annotator(too_long)
    with pytest.raises(LabelingError, match="at most"):  # what the labeling functions record goes through it
        set_label(faces, 2, "fear", too_long)
    assert set_label(faces, 2, "fear", "  ana ").annotator == "ana"


def test_undo_restores_an_imported_label_exactly_and_redo_reapplies(faces):
    set_label(faces, 1, "anger", "ana")
    set_label(faces, 1, "sadness", "ana")
    step = undo(faces)
    assert step.action == "undo" and [(c.old_label, c.new_label) for c in step.changes] == [("sadness", "anger")]
    assert label_row(faces, 1)[:3] == ("anger", SOURCE_ANNOTATOR, "ana")
    undo(faces)
    assert label_row(faces, 1) == ("fear", SOURCE_IMPORTED, None, IMPORTED_AT)
    assert undo(faces) is None
    assert redo(faces).changes[0].new_label == "anger"
    assert redo(faces).changes[0].new_label == "sadness"
    assert redo(faces) is None
    assert current(faces, 1) == "sadness"
    assert log(faces) == [(1, "fear", "anger", False), (1, "anger", "sadness", False)]  # never deleted


def test_undo_and_redo_survive_closing_and_reopening(faces):
    root = faces.root
    set_label(faces, 2, "happy", "ana")
    set_label(faces, 3, "sad", "ana")
    faces.close()
    with Project.open(root) as reopened:
        assert [c.face_id for c in undo(reopened).changes] == [3]
        assert current(reopened, 3) is None and current(reopened, 2) == "happiness"
    with Project.open(root) as reopened:
        assert redo(reopened).changes[0].face_id == 3
        assert current(reopened, 3) == "sadness"
        assert undo(reopened).face_ids == [3] and undo(reopened).face_ids == [2]
    with Project.open(root) as reopened:
        assert redo(reopened).face_ids == [2]  # the most recently undone step first
        assert redo(reopened).face_ids == [3]


def test_bulk_label_is_one_step_and_undo_restores_every_face(faces):
    set_label(faces, 2, "surprise", "ana")
    step = bulk_label(faces, [1, 2, 3, 3, 4], "neutral", "ana", include_labeled=True)
    assert step.face_ids == [1, 2, 3, 4]  # the repeated face counts once
    with faces.session() as s:
        batches = set(s.scalars(select(Correction.batch_id).where(Correction.new_label == "neutral")))
    assert batches == {step.batch_id} and len(step.batch_id) == 36
    undone = undo(faces)
    assert sorted(undone.face_ids) == [1, 2, 3, 4] and undone.batch_id == step.batch_id
    assert [current(faces, f) for f in (1, 2, 3, 4)] == ["fear", "surprise", None, None]
    assert label_row(faces, 1)[1] == SOURCE_IMPORTED
    assert sorted(redo(faces).face_ids) == [1, 2, 3, 4]
    assert [current(faces, f) for f in (1, 2, 3, 4)] == ["neutral"] * 4


def test_a_new_correction_clears_the_redo_stack(faces):
    set_label(faces, 2, "fear", "ana")
    set_label(faces, 3, "fear", "ana")
    undo(faces)  # face 3
    set_label(faces, 4, "anger", "ana")  # a new correction: face 3's redo is gone
    assert redo(faces) is None
    assert undo(faces).face_ids == [4]
    assert redo(faces).face_ids == [4]  # undone after the newest correction: redoable
    assert undo(faces).face_ids == [4] and undo(faces).face_ids == [2]  # face 3 stays undone
    assert redo(faces).face_ids == [2] and redo(faces).face_ids == [4] and redo(faces) is None
    assert [current(faces, f) for f in (2, 3, 4)] == ["fear", None, "anger"]


class SettableClock:
    """labeling's wall clock, as the test sets it: it may stand still or step back."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_redo_follows_the_log_when_the_clock_stands_still_or_steps_back(faces, monkeypatch):
    clock = SettableClock()
    monkeypatch.setattr(labeling, "utcnow", clock)
    # Everything in one instant: the undo is not later than the newest correction by the clock,
    # yet it came after it in the log, so the step can be redone.
    set_label(faces, 2, "fear", "ana")
    set_label(faces, 3, "anger", "ana")
    undo(faces, "ana")
    with faces.session() as s:
        undone = s.scalar(select(Correction).where(Correction.image_id == 3))
        assert undone.undone_at == s.scalar(select(func.max(Correction.created_at)))  # times tell nothing
    assert labeling.can_redo(faces, "ana") and redo(faces, "ana").face_ids == [3]

    # The clock steps back an hour: a correction made after the undo carries an earlier time
    # than the undo, yet it came after it in the log, so the undone step cannot be redone.
    clock.now += timedelta(minutes=1)
    undo(faces, "ana")
    clock.now -= timedelta(hours=1)
    set_label(faces, 4, "happiness", "ana")
    with faces.session() as s:
        undone = s.scalar(select(Correction).where(Correction.image_id == 3))
        assert undone.undone_at > s.scalar(select(func.max(Correction.created_at)))  # times say "redo"
    assert not labeling.can_redo(faces, "ana") and redo(faces, "ana") is None
    assert [current(faces, f) for f in (2, 3, 4)] == ["fear", None, "happiness"]
    assert undo(faces, "ana").face_ids == [4] and redo(faces, "ana").face_ids == [4] and redo(faces, "ana") is None


@pytest.mark.parametrize("store_backend", ["sqlite"])  # the frozen schemas are SQLite files
def test_a_database_of_schema_4_keeps_what_could_be_redone(faces):
    """Rows undone before schema 5 get their place in the log from the times they kept
    (tests/test_store.py migrates a PostgreSQL database)."""
    from tests.schema_history import corrections_before_schema_5

    set_label(faces, 2, "fear", "ana")
    set_label(faces, 3, "anger", "ana")
    undo(faces)  # face 3: still redoable
    set_label(faces, 5, "disgust", "ben")
    undo(faces, "ana")  # face 2, after ben's correction: redoable for ana
    set_label(faces, 4, "sadness", "ana")  # ...no more: ana logged a correction since
    undo(faces, "ben")  # face 5: redoable for ben
    root = faces.root
    faces.close()
    corrections_before_schema_5(root / "project.db")
    with Project.open(root) as migrated:
        with migrated.engine.connect() as conn:
            assert store_db.read_schema_version(conn) == store_db.SCHEMA_VERSION
        assert redo(migrated, "ana") is None
        assert redo(migrated, "ben").face_ids == [5]
        assert undo(migrated, "ana").face_ids == [4] and redo(migrated, "ana").face_ids == [4]
    assert len(list(root.glob("project.db.v4-*.bak"))) == 1


def test_clear_label_is_undoable(faces):
    step = clear_label(faces, 1, "ana")
    assert step.changes[0].new_label is None and current(faces, 1) is None
    assert clear_label(faces, 1, "ana") is None  # already unlabeled
    undo(faces)
    assert label_row(faces, 1) == ("fear", SOURCE_IMPORTED, None, IMPORTED_AT)


def test_annotators_undo_their_own_votes_and_never_overwrite_another_annotators(faces):
    set_label(faces, 2, "fear", "ana")
    set_label(faces, 3, "fear", "ana")
    set_label(faces, 3, "anger", "ben")  # ben votes otherwise on face 3 after her (a tie: newest wins)
    set_label(faces, 4, "happiness", "ben")
    step = undo(faces, annotator="ana")  # ana's latest: her vote on face 3; ben's vote stands
    assert [(c.face_id, c.old_label, c.new_label) for c in step.changes] == [(3, "anger", "anger")]
    assert "label stands" in step.describe() and current(faces, 3) == "anger"
    assert undo(faces, annotator="ana").face_ids == [2]
    assert current(faces, 4) == "happiness"  # ben's steps untouched
    assert undo(faces, annotator="ben").face_ids == [4]
    assert redo(faces, annotator="ana").face_ids == [2]
    assert [h.annotator for h in labeling.history(faces, 10, annotator="ben")] == ["ben", "ben"]
    assert undo(faces, annotator="ben").face_ids == [3]  # his vote on 3 gone: ana's is undone too
    assert current(faces, 3) is None


def test_accept_suggestion_takes_the_latest_finished_runs_prediction(faces):
    with pytest.raises(LabelingError, match="no finished run"):
        accept_suggestion(faces, 2, "ana")
    with faces.session() as s:
        s.add_all(
            [
                Run(id=1, algorithm="sitfer", encoder="tiny", status=RUN_FINISHED),
                Run(id=2, algorithm="sitfer", encoder="tiny", status=RUN_FINISHED),
                Run(id=3, algorithm="sitfer", encoder="tiny", status="running"),
            ]
        )
        s.flush()
        for run_id, label in ((1, "fear"), (2, "disgust"), (3, "anger")):
            s.add(Prediction(run_id=run_id, image_id=2, p_fused=[1 / 7] * 7, pseudo_label=label, confidence=0.3))
    step = accept_suggestion(faces, 2, "ana")
    assert step.changes[0].new_label == "disgust"
    with faces.session() as s:
        row = s.scalar(select(Correction))
        assert (row.suggestion, row.run_id) == ("disgust", 2)
    assert accept_suggestion(faces, 2, "ana", run_id=1).changes[0].new_label == "fear"
    with pytest.raises(LabelingError, match="run 2 has no prediction for face 3"):
        accept_suggestion(faces, 3, "ana")
    suggestion = labeling.suggestion_for(faces, 2)
    assert (suggestion.run_id, suggestion.label) == (2, "disgust")
    assert labeling.suggestion_for(faces, 3) is None


def test_history_is_newest_first_and_shows_undone_rows(faces):
    set_label(faces, 2, "fear", "ana", suggestion="surprise")
    bulk_label(faces, [3, 4], "anger", "ben")
    undo(faces)
    entries = labeling.history(faces, limit=2)
    assert [(e.face_id, e.new_label, e.undone_at is not None) for e in entries] == [
        (4, "anger", True),
        (3, "anger", True),
    ]
    assert [e.suggestion for e in labeling.history(faces, face_id=2)] == ["surprise"]


def test_migration_to_schema_2_adds_the_old_row_columns_and_keeps_the_log(project):
    with project.session() as s:
        s.add(Image(id=1, path="1.png", content_hash="1" * 64, width=4, height=4))
        s.flush()
        s.add(Label(image_id=1, label="anger", source=SOURCE_ANNOTATOR, annotator="ana"))
        s.add(Correction(image_id=1, annotator="ana", old_label="fear", new_label="anger"))
    root = project.root
    project.close()
    # Turn the database back into a schema-1 one: the columns schemas 2 and 3 added are gone.
    import sqlite3

    from tests.schema_history import runs_table_before_schema_3

    runs_table_before_schema_3(root / "project.db")
    with sqlite3.connect(root / "project.db") as conn:
        for column in ("old_source", "old_annotator", "old_updated_at"):
            conn.execute(f"ALTER TABLE corrections DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Project.open(root) as migrated:
        with migrated.engine.connect() as conn:
            assert store_db.read_schema_version(conn) == store_db.SCHEMA_VERSION
            columns = {row[1] for row in conn.execute(text("PRAGMA table_info(corrections)"))}
        assert {"old_source", "old_annotator", "old_updated_at"} <= columns
        # A row logged before schema 2 still undoes: with no earlier correction, the old label
        # came with an import.
        assert undo(migrated).changes[0].new_label == "fear"
        assert label_row(migrated, 1)[:3] == ("fear", SOURCE_IMPORTED, None)
    assert len(list(root.glob("project.db.v1-*.bak"))) == 1


def test_the_next_training_run_trains_on_the_corrected_labels(tmp_path):
    from core.ingest.demo import DemoSettings, create_demo_project
    from core.ssl.algorithms import MethodConfig
    from core.training.events import JsonEvents
    from core.training.loop import LoopConfig
    from core.training.settings import TrainSettings
    from core.training.worker import train

    project, _ = create_demo_project(
        tmp_path / "demo", DemoSettings(train_per_class=4, val_per_class=1, labeled_per_class=2, size=32)
    )
    with project, project.session() as s:
        imported = s.scalar(select(Label).join(Image).where(Image.split == "train").order_by(Image.id))
        hidden = s.scalars(select(HiddenTruth).order_by(HiddenTruth.image_id).limit(2)).all()
        imported_id, imported_label = imported.image_id, imported.label
        new_label = "neutral" if imported_label != "neutral" else "surprise"
        (added_id, added_label), (undone_id, _) = [(h.image_id, h.label) for h in hidden]
    with Project.open(tmp_path / "demo") as project:
        set_label(project, imported_id, new_label, "ana")
        set_label(project, added_id, added_label, "ana")
        set_label(project, undone_id, "fear", "ana")
        undo(project)
        settings = TrainSettings(
            algorithm="supervised",
            encoder="tiny",
            projection="none",
            strong_views=1,
            method=MethodConfig(),
            loop=LoopConfig(steps=5, batch_size=16, eval_every=5, checkpoint_every=5, log_every=5),
        )
        outcome = train(project, settings, JsonEvents(io.StringIO()))
        assert outcome.status == "finished"
        with project.session() as s:
            used = dict(
                s.execute(select(RunLabel.image_id, RunLabel.label).where(RunLabel.run_id == outcome.run_id)).all()
            )
            assert used[imported_id] == new_label and used[added_id] == added_label
            assert undone_id not in used
            assert len(used) == 7 * 2 + 1
            assert (
                s.scalar(select(func.count()).select_from(Prediction).where(Prediction.run_id == outcome.run_id))
                == 7 * 5
            )
        # The run's suggestion can be taken straight back as a label.
        step = accept_suggestion(project, undone_id, "ana")
        assert step.changes[0].new_label == labeling.suggestion_for(project, undone_id).label


def test_export_keeps_the_provenance_of_the_label_a_correction_replaced(faces, tmp_path):
    import csv

    from core.export import export_project

    set_label(faces, 1, "anger", "ana")
    set_label(faces, 2, "happiness", "ana")
    export_project(faces, tmp_path / "out")
    with open(tmp_path / "out" / "corrections.csv", encoding="utf-8", newline="") as handle:
        rows = {int(r["image_id"]): r for r in csv.DictReader(handle)}
    assert (rows[1]["old_label"], rows[1]["old_source"], rows[1]["old_labeled_at"]) == (
        "fear",
        SOURCE_IMPORTED,
        IMPORTED_AT.isoformat(),
    )
    assert (rows[2]["old_label"], rows[2]["old_source"], rows[2]["old_labeled_at"]) == ("", "", "")
