"""Votes of several annotators and the consensus that becomes a face's label (core/team/votes.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from core import labeling
from core.classes import class_names
from core.labeling import adjudicate, bulk_label, clear_label, redo, set_label, undo
from core.store import db as store_db
from core.store.models import SOURCE_ANNOTATOR, SOURCE_IMPORTED, Correction, Image, Label
from core.store.project import Project
from core.team.votes import load_votes, vote_counts, vote_distributions, voted_faces

IMPORTED_AT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def faces(store_project):
    """Faces 1-6 in train; face 1 carries an imported label (fear)."""
    project = store_project  # every test of this file runs on SQLite and on PostgreSQL
    with project.session() as s:
        for i in range(1, 7):
            s.add(Image(id=i, path=f"{i}.png", content_hash=f"{i:064x}", width=48, height=48))
        s.flush()
        s.add(Label(image_id=1, label="fear", source=SOURCE_IMPORTED, updated_at=IMPORTED_AT))
    return project


def label_of(project, face_id):
    with project.session() as s:
        row = s.get(Label, face_id)
        return None if row is None else row.label


def row_of(project, face_id):
    with project.session() as s:
        row = s.get(Label, face_id)
        return None if row is None else (row.label, row.source, row.annotator, row.updated_at)


def votes_of(project, face_id):
    with project.session() as s:
        return {v.annotator: v.label for v in load_votes(s, [face_id])}


def test_the_majority_decides_and_a_tie_goes_to_the_newest_vote(faces):
    set_label(faces, 2, "fear", "ana")
    assert label_of(faces, 2) == "fear"
    set_label(faces, 2, "surprise", "ben")  # 1-1: the newest
    assert label_of(faces, 2) == "surprise"
    set_label(faces, 2, "fear", "cy")  # 2-1
    assert label_of(faces, 2) == "fear" and row_of(faces, 2)[1:3] == (SOURCE_ANNOTATOR, "cy")
    set_label(faces, 2, "surprise", "dee")  # 2-2: dee's is the newest of the tied
    assert label_of(faces, 2) == "surprise"
    assert votes_of(faces, 2) == {"ana": "fear", "ben": "surprise", "cy": "fear", "dee": "surprise"}
    with faces.session() as s:
        assert vote_counts(s) == {2: 4} and voted_faces(s, "cy") == {2}


def test_an_annotator_changing_their_mind_replaces_their_own_vote(faces):
    set_label(faces, 3, "anger", "ana")
    set_label(faces, 3, "disgust", "ben")
    set_label(faces, 3, "disgust", "ana")  # her vote moves; not a second vote
    assert votes_of(faces, 3) == {"ana": "disgust", "ben": "disgust"}
    assert label_of(faces, 3) == "disgust"


def test_undo_in_any_order_restores_the_votes_and_at_last_the_imported_label(faces):
    set_label(faces, 1, "anger", "ana")
    set_label(faces, 1, "sadness", "ben")
    set_label(faces, 1, "sadness", "cy")
    assert label_of(faces, 1) == "sadness"
    undo(faces, "ben")  # 1 sadness (cy) - 1 anger (ana): cy's is newer
    assert votes_of(faces, 1) == {"ana": "anger", "cy": "sadness"} and label_of(faces, 1) == "sadness"
    undo(faces, "cy")
    assert label_of(faces, 1) == "anger"
    undo(faces, "ana")  # no vote left: what the face had before anyone voted, exactly
    assert row_of(faces, 1) == ("fear", SOURCE_IMPORTED, None, IMPORTED_AT) and votes_of(faces, 1) == {}
    redo(faces, "ben")
    assert votes_of(faces, 1) == {"ben": "sadness"} and label_of(faces, 1) == "sadness"


def test_a_clearing_vote_counts_like_any_other(faces):
    set_label(faces, 4, "happiness", "ana")
    clear_label(faces, 4, "ben")  # 1-1: ben's "no label" is newer
    assert label_of(faces, 4) is None and votes_of(faces, 4) == {"ana": "happiness", "ben": None}
    set_label(faces, 4, "happiness", "cy")
    assert label_of(faces, 4) == "happiness"
    assert clear_label(faces, 5, "ana") is None  # nothing to clear, no vote: nothing logged


def test_the_adjudicators_word_is_final_and_logged_as_such(faces):
    for who, label in (("ana", "fear"), ("ben", "fear"), ("cy", "surprise")):
        set_label(faces, 2, label, who)
    step = adjudicate(faces, 2, "surprise", "lead")
    assert step.changes[0].new_label == "surprise" and label_of(faces, 2) == "surprise"
    set_label(faces, 2, "fear", "dee")  # 3-1 for fear now, but the adjudication stands
    assert label_of(faces, 2) == "surprise"
    with faces.session() as s:
        marked = {c.annotator: c.adjudicated for c in s.scalars(select(Correction).where(Correction.image_id == 2))}
        assert marked == {"ana": False, "ben": False, "cy": False, "lead": True, "dee": False}
    set_label(faces, 2, "fear", "lead")  # the adjudicator votes instead: back to the majority
    assert label_of(faces, 2) == "fear"
    undo(faces, "lead")
    assert label_of(faces, 2) == "surprise"  # the adjudication is in force again


def test_bulk_steps_are_votes_and_undo_as_one(faces):
    set_label(faces, 2, "fear", "ana")
    step = bulk_label(faces, [2, 3, 4], "neutral", "ben", include_labeled=True)
    assert sorted(step.face_ids) == [2, 3, 4]
    assert [label_of(faces, f) for f in (2, 3, 4)] == ["neutral"] * 3  # face 2: 1-1, ben's newer
    undo(faces, "ben")
    assert [label_of(faces, f) for f in (2, 3, 4)] == ["fear", None, None]


def test_vote_distributions_are_the_soft_targets(faces):
    for who, label in (("ana", "fear"), ("ben", "fear"), ("cy", "surprise")):
        set_label(faces, 2, label, who)
    set_label(faces, 3, "anger", "ana")
    clear_label(faces, 3, "ben")
    clear_label(faces, 5, "ana")  # no vote on an unlabeled face: nothing
    for who, label in (("ana", "fear"), ("ben", "happiness")):
        set_label(faces, 6, label, who)
    adjudicate(faces, 6, "sadness", "lead")
    with faces.session() as s:
        shares = vote_distributions(load_votes(s))
    names = class_names()
    assert set(shares) == {2, 3, 6}
    assert shares[2][names.index("fear")] == pytest.approx(2 / 3) and shares[2].sum() == pytest.approx(1)
    assert shares[3][names.index("anger")] == 1.0  # the "no label" vote is no class
    assert np.flatnonzero(shares[6]).tolist() == [names.index("sadness")]


def test_two_annotators_at_once_in_two_processes_lose_no_vote(faces, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys\nfrom core import labeling\nfrom core.store.project import Project\n"
        "root, name, label = sys.argv[1:]\n"
        "with Project.open(root) as p:\n"
        "    for i in range(40):\n"
        "        labeling.set_label(p, 2 + i % 5, label if i % 2 else 'neutral', name)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(faces.root), who, label], cwd=repo)
        for who, label in (("ana", "fear"), ("ben", "anger"))
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with faces.session() as s:
        votes = {(v.face_id, v.annotator): v.label for v in load_votes(s)}
        logged = s.scalars(select(Correction.id)).all()
    # Each writes faces 2-6 in turn; its last write of face f (i = 35..39) is its vote.
    expected = {
        (2 + i % 5, who): (label if i % 2 else "neutral")
        for who, label in (("ana", "fear"), ("ben", "anger"))
        for i in range(35, 40)
    }
    assert votes == expected and len(logged) == 80


def test_schema_5_database_gets_votes_from_its_log(tmp_path):
    from tests.schema_history import votes_before_schema_6

    root = tmp_path / "proj"
    with Project.create(root) as project:
        with project.session() as s:
            for i in (1, 2):
                s.add(Image(id=i, path=f"{i}.png", content_hash=f"{i:064x}", width=48, height=48))
        set_label(project, 1, "fear", "ana")
        set_label(project, 1, "anger", "ana")
        set_label(project, 1, "happiness", "ben")
        set_label(project, 2, "sadness", "ana")
        undo(project, "ana")  # her face-2 vote undone: no vote there
    votes_before_schema_6(root / "project.db")
    with Project.open(root) as migrated:
        with migrated.engine.connect() as conn:
            assert store_db.read_schema_version(conn) == store_db.SCHEMA_VERSION
        with migrated.session() as s:
            assert {(v.face_id, v.annotator, v.label) for v in load_votes(s)} == {
                (1, "ana", "anger"),
                (1, "ben", "happiness"),
            }
        assert labeling.undo(migrated, "ben").changes[0].new_label == "anger"


def test_export_keeps_every_annotators_votes(faces, tmp_path):
    import csv

    from core.export import export_project

    set_label(faces, 2, "fear", "ana")
    set_label(faces, 2, "surprise", "ben")
    adjudicate(faces, 2, "fear", "lead")
    clear_label(faces, 1, "ana")  # the imported label cleared: no row in labels.csv
    export_project(faces, tmp_path / "out")

    def rows(name):
        with open(tmp_path / "out" / name, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    [labeled] = rows("labels.csv")
    assert (labeled["image_id"], labeled["label"], labeled["votes"]) == (
        "2",
        "fear",
        "ana:fear;ben:surprise;lead:!fear",
    )
    votes = [(r["image_id"], r["annotator"], r["label"], r["adjudicated"]) for r in rows("votes.csv")]
    assert votes == [
        ("1", "ana", "", "0"),
        ("2", "ana", "fear", "0"),
        ("2", "ben", "surprise", "0"),
        ("2", "lead", "fear", "1"),
    ]
    assert [r["adjudicated"] for r in rows("corrections.csv")] == ["0", "0", "1", "0"]
