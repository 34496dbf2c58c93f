"""The project store: creation, round trips, schema versions and migrations. Tests taking
`store_project` or `database_url` run on SQLite and on PostgreSQL (tests/conftest.py); those
about the SQLite file itself (pragmas, backups, frozen old schemas) take the SQLite `project`."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from core.store import db as store_db
from core.store.models import (
    SOURCE_ANNOTATOR,
    Correction,
    Embedding,
    HiddenTruth,
    Image,
    Label,
    Metric,
    Prediction,
    Projection,
    Run,
    RunLabel,
    Vote,
    utcnow,
)
from core.store.project import Project, ProjectError
from core.store.queries import list_faces, project_stats


def _add_face(session, n: int, split: str = "train") -> Image:
    image = Image(path=f"faces/{n}.png", content_hash=f"{n:064x}", width=48, height=48, split=split)
    session.add(image)
    session.flush()
    return image


def test_new_project_has_wal_foreign_keys_and_version(project):
    assert (project.root / "project.json").is_file()
    assert (project.root / "project.db").is_file()
    for cache in ("faces", "thumbnails", "features", "checkpoints"):
        assert (project.root / cache).is_dir()
    with project.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == store_db.BUSY_TIMEOUT_MS
        assert store_db.read_schema_version(conn) == store_db.SCHEMA_VERSION


def test_round_trip_of_every_table_survives_reopen(store_project):
    project = store_project
    with project.session() as s:
        face = _add_face(s, 1)
        other = _add_face(s, 2, split="val")
        s.add(Label(image_id=face.id, label="fear", source=SOURCE_ANNOTATOR, annotator="ana"))
        s.add(HiddenTruth(image_id=other.id, label="surprise"))
        run = Run(algorithm="sitfer", encoder="tiny", mode="head", config={"lr": 0.01, "levels": [1, 2]})
        s.add(run)
        s.flush()
        s.add(RunLabel(run_id=run.id, image_id=face.id, label="fear"))
        s.add(
            Correction(
                image_id=face.id,
                annotator="ana",
                old_label=None,
                new_label="fear",
                suggestion="surprise",
                run_id=run.id,
            )
        )
        s.add(Metric(run_id=run.id, step=10, name="val_accuracy", value=0.5))
        s.add(
            Prediction(
                run_id=run.id,
                image_id=other.id,
                p_semantic=[0.1] * 7,
                p_text=[0.2] * 7,
                p_instance=None,
                p_fused=[1 / 7] * 7,
                pseudo_label="fear",
                confidence=0.4,
                passed_threshold=False,
                extra={"positive_set": ["fear", "surprise"]},
            )
        )
        s.add(Embedding(run_id=run.id, image_id=other.id, vector=b"\x00" * 16, dim=4))
        s.add(Projection(run_id=run.id, image_id=other.id, method="umap", x=1.5, y=-2.0))
    root = project.root
    project.close()

    reopened = Project.open(root)
    with reopened.session() as s:
        label = s.get(Label, 1)
        assert (label.label, label.annotator, label.image.path) == ("fear", "ana", "faces/1.png")
        assert label.updated_at.tzinfo is not None, "timestamps come back timezone-aware"
        assert s.scalar(select(Run.config)) == {"lr": 0.01, "levels": [1, 2]}
        prediction = s.scalar(select(Prediction))
        assert prediction.p_instance is None and prediction.extra["positive_set"] == ["fear", "surprise"]
        assert prediction.p_fused == pytest.approx([1 / 7] * 7)
        assert s.scalar(select(Projection.x)) == 1.5
        assert s.scalar(select(Correction.suggestion)) == "surprise"
        stats = project_stats(s)
        assert stats["images"] == 2 and stats["labeled"] == 1 and stats["hidden_truth"] == 1
        assert stats["by_split"]["val"] == {"images": 1, "labeled": 0, "unlabeled": 1}
        assert stats["by_label"]["fear"] == 1
        # list_faces shows current labels only: the hidden truth of face 2 must not leak.
        faces = {f.id: f for f in list_faces(s)}
        assert faces[2].label is None and faces[1].label == "fear"
    reopened.close()


def test_foreign_keys_are_enforced(store_project):
    with pytest.raises(IntegrityError), store_project.session() as s:
        s.add(Label(image_id=999, label="fear", source=SOURCE_ANNOTATOR))


def test_duplicate_face_is_rejected_by_the_database(store_project):
    with pytest.raises(IntegrityError), store_project.session() as s:
        _add_face(s, 1)
        s.add(Image(path="copy.png", content_hash=f"{1:064x}", width=1, height=1))
        s.flush()


def test_open_refuses_non_projects_and_damaged_descriptors(tmp_path):
    with pytest.raises(ProjectError, match="not a project"):
        Project.open(tmp_path)
    (tmp_path / "project.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ProjectError, match="damaged"):
        Project.open(tmp_path)


def test_create_refuses_an_existing_project(store_project, database_url):
    with pytest.raises(ProjectError, match="already a project"):
        Project.create(store_project.root, database_url=database_url)


def test_a_foreign_sqlite_file_is_refused(tmp_path):
    root = tmp_path / "p"
    Project.create(root).close()
    db = root / "project.db"
    db.unlink()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE something (x)")
    with pytest.raises(ProjectError, match="not a FER studio database"):
        Project.open(root)


def test_a_server_database_holding_other_tables_is_refused(tmp_path, postgres_url):
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE something (x INTEGER)"))
    engine.dispose()
    with pytest.raises(ProjectError, match="not a FER studio database"):
        Project.create(tmp_path / "p", database_url=postgres_url)
    assert not (tmp_path / "p" / "project.json").exists()


def test_newer_schema_is_refused_with_a_clear_message(store_project):
    project = store_project
    with project.engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value = '999' WHERE key = 'schema_version'"))
    root = project.root
    project.close()
    with pytest.raises(ProjectError, match="newer than this studio"):
        Project.open(root)


def test_migration_path_upgrades_an_old_database_and_keeps_its_rows(store_project, store_backend, monkeypatch):
    project = store_project
    with project.session() as s:
        face = _add_face(s, 5)
        s.add(Label(image_id=face.id, label="anger", source=SOURCE_ANNOTATOR))
    root = project.root
    project.close()

    # Pretend the code moved on by one schema version with a real DDL change.
    def add_note_column(conn):
        conn.execute(text("ALTER TABLE images ADD COLUMN note TEXT DEFAULT ''"))

    current = store_db.SCHEMA_VERSION
    monkeypatch.setattr(store_db, "SCHEMA_VERSION", current + 1)
    monkeypatch.setattr(store_db, "MIGRATIONS", [store_db.Migration(current + 1, "image notes", add_note_column)])
    migrated = Project.open(root)
    with migrated.engine.connect() as conn:
        assert store_db.read_schema_version(conn) == current + 1
        assert "note" in {column["name"] for column in inspect(conn).get_columns("images")}
        assert conn.execute(text("SELECT label FROM labels")).scalar() == "anger"
    migrated.close()
    backups = list(root.glob(f"project.db.v{current}-*.bak"))
    if store_backend == "postgresql":
        assert backups == [], "a server's database is backed up by its administrator, not copied into the folder"
        return
    assert len(backups) == 1, "a backup is taken before migrating"
    with sqlite3.connect(backups[0]) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(current)


def test_migration_to_schema_3_keeps_runs_as_trained_runs_without_parents(project):
    from tests.schema_history import runs_table_before_schema_3

    with project.session() as s:
        face = _add_face(s, 7)
        run = Run(algorithm="sitfer", encoder="tiny", status="finished")
        s.add(run)
        s.flush()
        s.add(RunLabel(run_id=run.id, image_id=face.id, label="fear"))
        s.add(Prediction(run_id=run.id, image_id=face.id, p_fused=[1.0], pseudo_label="fear", confidence=1.0))
    root = project.root
    project.close()
    runs_table_before_schema_3(root / "project.db")
    with sqlite3.connect(root / "project.db") as conn:
        assert "parent_run_id" not in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}

    with Project.open(root) as migrated:
        with migrated.engine.connect() as conn:
            assert store_db.read_schema_version(conn) == store_db.SCHEMA_VERSION
        with migrated.session() as s:
            old = s.scalars(select(Run)).one()
            assert (old.kind, old.parent_run_id, old.predictions_pruned_at) == ("train", None, None)
            assert s.scalars(select(Prediction.pseudo_label)).all() == ["fear"]
            refit = Run(algorithm="sitfer", encoder="tiny", kind="refit", parent_run_id=old.id)
            s.add(refit)
            s.flush()
            refit_id = refit.id
        with migrated.session() as s:  # the parent's foreign key works on the migrated table
            s.delete(s.get(Run, old.id))
        with migrated.session() as s:
            assert s.get(Run, refit_id).parent_run_id is None
    assert len(list(root.glob("project.db.v2-*.bak"))) == 1


def test_missing_migration_step_is_an_error(store_project, monkeypatch):
    root = store_project.root
    store_project.close()
    monkeypatch.setattr(store_db, "SCHEMA_VERSION", store_db.SCHEMA_VERSION + 2)
    monkeypatch.setattr(store_db, "MIGRATIONS", [])
    with pytest.raises(ProjectError, match="no migration path"):
        Project.open(root)


def test_paths_inside_the_project_are_stored_relative(store_project, database_url, tmp_path):
    project = store_project
    inside = project.root / "demo_images" / "a.png"
    outside = tmp_path / "elsewhere" / "b.png"
    assert project.store_path(inside) == "demo_images/a.png"
    assert project.store_path(outside) == str(outside.resolve())
    assert project.resolve_path("demo_images/a.png") == inside
    descriptor = json.loads((project.root / "project.json").read_text())
    assert descriptor["database"] == database_url


def test_the_database_can_live_at_any_sqlalchemy_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared' / 'studio.db'}"
    (tmp_path / "shared").mkdir()
    with Project.create(tmp_path / "p", database_url=url) as project, project.session() as s:
        _add_face(s, 9)
    assert (tmp_path / "shared" / "studio.db").is_file() and not (tmp_path / "p" / "project.db").exists()
    with Project.open(tmp_path / "p") as project, project.session() as s:
        assert project.database_url == url and project_stats(s)["images"] == 1


def test_a_run_killed_while_cancelling_is_settled_as_cancelled_not_failed(store_project):
    import socket
    import subprocess
    import sys

    from core.store.models import Run
    from core.store.runs import reap_dead_runs, settle_cancelled_run

    project = store_project
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    with project.session() as s:
        cancelled, alive, dead = (
            Run(algorithm="sitfer", encoder="tiny", status="running", pid=pid, host=here)
            for pid in (gone.pid, os.getpid(), gone.pid)
        )
        s.add_all([cancelled, alive, dead])
        s.flush()
        ids = cancelled.id, alive.id, dead.id
    with project.session() as s:
        assert settle_cancelled_run(s, ids[0]) and not settle_cancelled_run(s, ids[1]), "a live worker is left alone"
    root = project.root
    project.close()
    with Project.open(root) as reopened, reopened.session() as s:  # opening reaps the dead worker's run
        run = s.get(Run, ids[0])
        assert run.status == "cancelled" and f"--resume {ids[0]}" in run.error
        assert s.get(Run, ids[1]).status == "running"
        assert s.get(Run, ids[2]).status == "failed" and f"pid {gone.pid}" in s.get(Run, ids[2]).error
        assert reap_dead_runs(s) == []


def test_migration_to_schema_4_gives_old_faces_no_detector_findings(project):
    from tests.schema_history import IMAGE_COLUMNS_OF_SCHEMA_4, images_before_schema_4

    with project.session() as s:
        _add_face(s, 7)
    root = project.root
    project.close()
    images_before_schema_4(root / "project.db")
    with sqlite3.connect(root / "project.db") as conn:
        assert not set(IMAGE_COLUMNS_OF_SCHEMA_4) & {row[1] for row in conn.execute("PRAGMA table_info(images)")}

    with Project.open(root) as migrated:
        with migrated.engine.connect() as conn:
            assert store_db.read_schema_version(conn) == store_db.SCHEMA_VERSION
        with migrated.session() as s:
            old = s.scalars(select(Image)).one()
            assert (old.face_angle, old.face_keypoints, old.face_detector, old.face_score) == (None,) * 4
            old.face_angle, old.face_keypoints, old.face_detector = 12.5, [[1.0, 2.0]] * 6, "blazeface"
        with migrated.session() as s:
            again = s.scalars(select(Image)).one()
            assert (again.face_angle, again.face_keypoints[5], again.face_detector) == (12.5, [1.0, 2.0], "blazeface")
    assert len(list(root.glob("project.db.v3-*.bak"))) == 1


def test_migrations_from_schema_2_run_on_postgresql(tmp_path, postgres_url):
    """Every released migration step, on a server: schema 3's run lineage, 4's detector
    findings, 5's log positions (filled in for a step undone before it), 6's votes (from the log)."""
    with Project.create(tmp_path / "p", database_url=postgres_url) as project, project.session() as s:
        face = _add_face(s, 3)
        s.add(Run(algorithm="sitfer", encoder="tiny", status="finished"))
        s.add(Correction(image_id=face.id, annotator="ana", old_label=None, new_label="fear"))
        s.flush()
        s.add(Correction(image_id=face.id, annotator="ana", old_label="fear", new_label="anger", undone_at=utcnow()))
    engine = create_engine(postgres_url)
    with engine.begin() as conn:  # back to what schema 2 created
        conn.execute(text("DROP TABLE votes"))
        conn.execute(text("ALTER TABLE corrections DROP COLUMN adjudicated"))
        conn.execute(text("ALTER TABLE corrections DROP COLUMN undone_after_id"))
        conn.execute(text("ALTER TABLE images DROP COLUMN face_angle, DROP COLUMN face_keypoints"))
        conn.execute(text("ALTER TABLE images DROP COLUMN face_detector, DROP COLUMN face_score"))
        conn.execute(text("ALTER TABLE runs DROP COLUMN kind, DROP COLUMN parent_run_id"))
        conn.execute(text("ALTER TABLE runs DROP COLUMN predictions_pruned_at"))
        conn.execute(text("UPDATE meta SET value = '2' WHERE key = 'schema_version'"))
    engine.dispose()

    with Project.open(tmp_path / "p") as migrated:
        with migrated.engine.connect() as conn:
            assert store_db.read_schema_version(conn) == store_db.SCHEMA_VERSION
        with migrated.session() as s:
            old = s.scalars(select(Run)).one()
            assert (old.kind, old.parent_run_id, old.predictions_pruned_at) == ("train", None, None)
            assert s.scalars(select(Image.face_keypoints)).one() is None
            undone = s.scalars(select(Correction).where(Correction.undone_at.is_not(None))).one()
            assert undone.undone_after_id == undone.id
            assert [(v.annotator, v.label, v.adjudicated) for v in s.scalars(select(Vote))] == [("ana", "fear", False)]
            s.add(Run(algorithm="sitfer", encoder="tiny", kind="refit", parent_run_id=old.id))
            s.get(Image, face.id).face_keypoints = [[1.0, 2.0]] * 6
        with migrated.session() as s:
            assert s.scalars(select(Run.parent_run_id).where(Run.kind == "refit")).one() == old.id
            assert s.get(Image, face.id).face_keypoints[5] == [1.0, 2.0]
    assert not list((tmp_path / "p").glob("*.bak"))
