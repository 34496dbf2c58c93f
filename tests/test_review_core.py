"""The Qt-free parts of the review workflow: today's corrections in local time, clearing many
labels as one step, a face's evidence, the nearest labeled faces, the project's own class
descriptions (and that `train` picks them up), and re-scoring a run's text level."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import insert, select, update

from core import labeling
from core.active.data import load_embeddings, load_thresholds
from core.active.evidence import LabeledNeighbours, face_evidence
from core.classes import class_names
from core.encoders.text import (
    DESCRIPTIONS_HISTORY,
    check_descriptions,
    descriptions_for_project,
    load_descriptions,
    project_descriptions_path,
    save_project_descriptions,
)
from core.ssl.fusion import fuse
from core.store.models import Correction, Image, Label, Prediction, Run
from core.store.project import Project
from core.store.queries import labeled_today, local_midnight
from core.training.rescore import RescoreError, rescore_text_level
from tests.studio_runs import FACES, make_demo, project_copy

FIXMATCH_RUN, SITFER_RUN = 1, 2


@pytest.fixture(scope="module")
def runs_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("review-core") / "demo", runs=("fixmatch", "sitfer"))


@pytest.fixture
def runs_project(runs_template, tmp_path):
    with Project.open(project_copy(runs_template, tmp_path)) as project:
        yield project


@pytest.fixture
def local_zone(monkeypatch):
    """A fixed local time zone, 5 hours behind UTC (no daylight saving), for 'today'."""
    monkeypatch.setenv("TZ", "UTC+05:00")  # POSIX: UTC+5 means five hours *behind* UTC
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# -- counts ----------------------------------------------------------------------------------------
def test_labeled_today_counts_faces_labeled_since_local_midnight(project, local_zone):
    now = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 21:00 on March 9th, local time
    assert local_midnight(now) == datetime(2026, 3, 9, 5, 0, tzinfo=UTC)
    with project.session() as session:
        session.execute(
            insert(Image),
            [
                {"id": i, "path": f"{i}.png", "content_hash": f"{i:064d}", "width": 48, "height": 48}
                for i in range(1, 6)
            ],
        )
        rows = [
            (1, now - timedelta(hours=1), None),  # today
            (1, now - timedelta(hours=2), None),  # today again: one face
            (2, now - timedelta(hours=20, minutes=59), None),  # 00:01 local: today
            (3, now - timedelta(hours=21, minutes=1), None),  # 23:59 yesterday, local
            (4, now - timedelta(minutes=5), now),  # undone
        ]
        session.execute(
            insert(Correction),
            [
                {
                    "image_id": f,
                    "annotator": "a",
                    "created_at": at,
                    "old_label": None,
                    "new_label": "fear",
                    "undone_at": undone,
                }
                for f, at, undone in rows
            ],
        )
        # A label cleared today leaves the face without one: not counted.
        session.add(Correction(image_id=5, annotator="a", created_at=now, old_label="fear", new_label=None))
    with project.session() as session:
        assert labeled_today(session, now) == 2
        # In UTC the same moments fall on another day: the count follows the local calendar.
        assert labeled_today(session, now + timedelta(hours=4)) == 0


def test_clear_labels_is_one_undoable_step(project):
    with project.session() as session:
        session.execute(
            insert(Image),
            [
                {"id": i, "path": f"{i}.png", "content_hash": f"{i:064d}", "width": 48, "height": 48}
                for i in range(1, 5)
            ],
        )
        session.execute(insert(Label), [{"image_id": i, "label": "fear", "source": "imported"} for i in (1, 2)])
    step = labeling.clear_labels(project, [1, 2, 3], "ann")
    assert sorted(step.face_ids) == [1, 2] and step.batch_id is not None  # face 3 had no label
    with project.session() as session:
        assert session.scalar(select(Label).limit(1)) is None
    undone = labeling.undo(project, "ann")
    assert sorted(undone.face_ids) == [1, 2]
    with project.session() as session:
        assert {(r.image_id, r.label, r.source) for r in session.scalars(select(Label))} == {
            (1, "fear", "imported"),
            (2, "fear", "imported"),
        }
    assert labeling.clear_labels(project, [3], "ann") is None


# -- evidence ----------------------------------------------------------------------------------------
def test_face_evidence_keeps_absent_levels_absent(runs_project):
    with runs_project.session() as session:
        face = session.scalar(select(Label.image_id).where(Label.source == "imported").limit(1))
        fixmatch = face_evidence(session, FIXMATCH_RUN, face)
        sitfer = face_evidence(session, SITFER_RUN, face)
        stored = session.get(Prediction, (SITFER_RUN, face))
        none = face_evidence(session, None, face)
        missing = face_evidence(session, SITFER_RUN, 10_000)
    assert fixmatch.levels["text"] is None and fixmatch.levels["instance"] is None
    assert fixmatch.levels["semantic"].shape == (7,)
    assert np.allclose(sitfer.levels["text"], stored.p_text) and np.allclose(sitfer.fused, stored.p_fused)
    assert sitfer.pseudo_label == stored.pseudo_label and sitfer.thresholds.shape == (7,)
    assert sitfer.label_source == "imported" and sitfer.annotator is None
    assert none.fused is None and all(v is None for v in none.levels.values())
    assert missing is None
    assert sitfer.extra is None, "sitfer writes no algorithm-specific output"


def test_face_evidence_carries_leafs_positive_set(runs_project):
    with runs_project.session() as session:
        row = session.scalar(select(Prediction).where(Prediction.run_id == SITFER_RUN).limit(1))
        row.extra = {"positive_set": ["fear", "surprise"]}
    with runs_project.session() as session:
        evidence = face_evidence(session, SITFER_RUN, row.image_id)
    with runs_project.session() as session:  # the project is shared by this module's tests
        session.get(Prediction, (SITFER_RUN, row.image_id)).extra = None
    assert evidence.extra == {"positive_set": ["fear", "surprise"]}


def test_nearest_labeled_faces_by_cosine_and_after_new_labels(runs_project):
    index = LabeledNeighbours(SITFER_RUN, split="train")
    with runs_project.session() as session:
        index.refresh_labels(session)
        query = session.scalar(
            select(Image.id)
            .outerjoin(Label, Label.image_id == Image.id)
            .where(Label.image_id.is_(None), Image.split == "train")
            .limit(1)
        )
        nearest = index.nearest(session, query, k=4)
        labeled = dict(
            session.execute(
                select(Label.image_id, Label.label)
                .join(Image, Image.id == Label.image_id)
                .where(Image.split == "train")
            ).all()
        )
        ids = np.array(sorted(labeled))
        _found, vectors = load_embeddings(session, SITFER_RUN, ids)
        _found, one = load_embeddings(session, SITFER_RUN, np.array([query]))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ (one[0] / np.linalg.norm(one[0]))
    best = np.argsort(-similarity)[:4]
    assert [n.face_id for n in nearest] == ids[best].tolist()
    assert [n.label for n in nearest] == [labeled[f] for f in ids[best]]
    assert index.labeled_count == len(ids)
    # Label changes apply face by face: a new label joins, a cleared one leaves, a changed one
    # carries its new name; the face itself never counts as its own neighbour.
    labeling.set_label(runs_project, query, "fear", "ann")
    first = int(ids[best[0]])
    labeling.clear_label(runs_project, first, "ann")
    second = int(ids[best[1]])
    labeling.set_label(runs_project, second, "anger" if labeled[second] != "anger" else "fear", "ann")
    index.labels_changed([query, first, second])
    with runs_project.session() as session:
        around_query = index.nearest(session, query, k=50)
        around_second = {n.face_id: n.label for n in index.nearest(session, second, k=50)}
    assert index.labeled_count == len(ids)  # one in, one out
    assert query not in [n.face_id for n in around_query] and first not in [n.face_id for n in around_query]
    assert around_query[0].face_id == second and around_query[0].label != labeled[second]
    assert around_second[query] == "fear" and first not in around_second
    rebuilt = LabeledNeighbours(SITFER_RUN, split="train")
    with runs_project.session() as session:
        assert rebuilt.nearest(session, query, k=50) == around_query  # the same as a fresh build


# -- descriptions -----------------------------------------------------------------------------------
def test_project_descriptions_are_saved_kept_and_preferred(tmp_path):
    shipped = load_descriptions()
    assert descriptions_for_project(tmp_path)[0] == shipped  # no copy yet
    edited = {**shipped, "fear": ["wide eyes, stretched lips"]}
    path = save_project_descriptions(tmp_path, edited)
    assert path == project_descriptions_path(tmp_path)
    loaded, source = descriptions_for_project(tmp_path)
    assert loaded == edited and source == path
    save_project_descriptions(tmp_path, {**edited, "fear": ["a scream"]})
    [kept] = (tmp_path / DESCRIPTIONS_HISTORY).iterdir()  # the replaced copy, not lost
    assert json.loads(kept.read_text())["fear"] == ["wide eyes, stretched lips"]
    with pytest.raises(ValueError, match="'anger' must be a non-empty list"):
        save_project_descriptions(tmp_path, {**edited, "anger": []})
    with pytest.raises(ValueError, match="unknown class"):
        check_descriptions({**edited, "contempt": ["a smirk"]})
    assert descriptions_for_project(tmp_path)[0]["fear"] == ["a scream"]  # the refused save changed nothing


def test_train_uses_the_projects_descriptions(runs_project, monkeypatch):
    import core.training.worker as worker
    from core.training.events import NullEvents
    from core.training.settings import TrainSettings

    seen = {}

    def fake_execute(project, run_id, settings, events, should_stop, resuming):
        seen["descriptions"] = settings.descriptions
        return worker.RunOutcome(run_id, "finished", {})

    monkeypatch.setattr(worker, "_execute", fake_execute)

    def train(**fields):
        worker.train(runs_project, TrainSettings(encoder="tiny", **fields), NullEvents())
        return seen["descriptions"]

    assert train() is None  # no copy: the shipped file
    save_project_descriptions(runs_project.root, load_descriptions())
    recorded = train()
    assert recorded == "descriptions.json", "the worker itself prefers the copy, recorded relative to the project"
    assert runs_project.resolve_path(recorded) == project_descriptions_path(runs_project.root)
    explicit = runs_project.root.parent / "x.json"  # checked before the run: it must exist and parse
    explicit.write_text(json.dumps(load_descriptions()), encoding="utf-8")
    assert train(descriptions=str(explicit)) == str(explicit), "an explicit file wins"


# -- re-scoring --------------------------------------------------------------------------------------
def predictions(project: Project, run_id: int) -> dict[int, Prediction]:
    with project.session() as session:
        return {p.image_id: p for p in session.scalars(select(Prediction).where(Prediction.run_id == run_id))}


def test_rescoring_with_the_runs_own_descriptions_changes_nothing(runs_project):
    before = predictions(runs_project, SITFER_RUN)
    result = rescore_text_level(runs_project, SITFER_RUN, load_descriptions())
    after = predictions(runs_project, SITFER_RUN)
    assert result.faces == FACES and result.pseudo_labels_changed == 0
    for face, old in before.items():
        assert np.allclose(after[face].p_text, old.p_text, atol=1e-5)
        assert np.allclose(after[face].p_fused, old.p_fused, atol=2e-5)
        assert after[face].pseudo_label == old.pseudo_label


def test_rescoring_with_new_descriptions_rewrites_the_text_level_and_fusion(runs_project):
    before = predictions(runs_project, SITFER_RUN)
    untouched = predictions(runs_project, FIXMATCH_RUN)
    descriptions = {**load_descriptions(), "surprise": ["an open mouth"], "fear": ["eyes wide with terror"]}
    seen = []
    result = rescore_text_level(
        runs_project, SITFER_RUN, descriptions, progress=lambda message, fraction: seen.append(fraction)
    )
    after = predictions(runs_project, SITFER_RUN)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and result.faces == FACES
    with runs_project.session() as session:
        config = session.get(Run, SITFER_RUN).config["method"]
        thresholds = load_thresholds(session, SITFER_RUN)
    changed = 0
    for face, old in before.items():
        new = after[face]
        changed += not np.allclose(new.p_text, old.p_text, atol=1e-4)
        assert new.p_semantic == old.p_semantic and new.p_instance == old.p_instance  # kept as stored
        expected = fuse(torch.tensor(old.p_semantic), torch.tensor(new.p_text), None, tuple(config["weights"]))
        assert np.allclose(new.p_fused, expected.numpy(), atol=2e-5)
        assert new.pseudo_label == class_names()[int(np.argmax(new.p_fused))]
        assert new.confidence == pytest.approx(max(new.p_fused), abs=2e-5)
        assert new.passed_threshold == (new.confidence >= thresholds[class_names().index(new.pseudo_label)])
    assert changed == FACES
    assert result.pseudo_labels_changed == sum(after[f].pseudo_label != before[f].pseudo_label for f in before)
    assert predictions(runs_project, FIXMATCH_RUN).keys() == untouched.keys()
    assert all(predictions(runs_project, FIXMATCH_RUN)[f].p_fused == p.p_fused for f, p in untouched.items())


def test_rescoring_refuses_runs_it_cannot_rescore_and_writes_nothing(runs_project):
    before = predictions(runs_project, FIXMATCH_RUN)
    with pytest.raises(RescoreError, match="without the text level"):
        rescore_text_level(runs_project, FIXMATCH_RUN, load_descriptions())
    assert {f: p.p_fused for f, p in predictions(runs_project, FIXMATCH_RUN).items()} == {
        f: p.p_fused for f, p in before.items()
    }
    with runs_project.session() as session:
        session.execute(update(Run).where(Run.id == SITFER_RUN).values(mode="finetune"))
    with pytest.raises(RescoreError, match=r"fine-tune mode.*no features of that encoder are cached"):
        rescore_text_level(runs_project, SITFER_RUN, load_descriptions())
    with pytest.raises(RescoreError, match="there is no run 99"):
        rescore_text_level(runs_project, 99, load_descriptions())
