"""A shared project on a live PostgreSQL server (tests/conftest.py starts one): the command line
end to end in separate processes, the studio opening it, two annotators writing at once, and the
messages for a server that is down, a wrong password or a missing database. The store's own tests
run on both backends in tests/test_store.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError

from core.cli import main as cli_main
from core.cli.common import EXIT_PROJECT
from core.ingest.importer import ImportOptions, import_source
from core.store.errors import READ_ONLY, explain_storage_error
from core.store.models import Correction, Image, Label
from core.store.project import PROJECT_FILE, Project, ProjectError
from core.store.queries import project_stats
from tests.imagegen import write_class_folders
from tests.test_cli import cli  # main.py in a process of its own, as a second machine runs it

REPO = Path(__file__).resolve().parent.parent


def test_init_import_stats_and_labels_through_the_command_line(tmp_path, postgres_url):
    root = tmp_path / "shared"
    out = cli("init", root, "--database-url", postgres_url).stdout
    assert "Created project" in out and postgres_url.split("?")[0] in out
    assert json.loads((root / PROJECT_FILE).read_text())["database"] == postgres_url
    write_class_folders(tmp_path / "photos", {"happy": 3, "angry": 2})
    report = json.loads(cli("import", root, tmp_path / "photos", "--faces", "none", "--json").stdout)
    assert report["imported"] == 5
    assert not (root / "project.db").exists(), "the faces' rows live on the server, not in the folder"

    stats = json.loads(cli("stats", root, "--json").stdout)  # another process, reading only
    assert stats["images"] == 5 and stats["by_label"]["happiness"] == 3 and stats["by_label"]["anger"] == 2
    with Project.open(root) as project, project.session() as s:
        unlabeled_face = s.scalars(select(Image.id).where(Image.path.contains("angry"))).first()
    cli("label", root, unlabeled_face, "surprise", "--annotator", "bob")
    history = json.loads(cli("history", root, "--json").stdout)
    assert [(e["face_id"], e["annotator"], e["new_label"]) for e in history] == [(unlabeled_face, "bob", "surprise")]
    assert json.loads(cli("stats", root, "--json").stdout)["by_label"]["surprise"] == 1


def test_the_studio_opens_a_shared_project_and_shows_its_faces(qtbot, tmp_path, postgres_url):
    from app.face_model import ThumbState
    from app.main_window import MainWindow
    from tests.test_app import FakeDialogs

    write_class_folders(tmp_path / "photos", {"happy": 4, "sad": 3, "neutral": 2})
    with Project.create(tmp_path / "shared", postgres_url) as project:
        import_source(project, tmp_path / "photos", ImportOptions(faces="none", workers=1))
    dialogs = FakeDialogs()
    window = MainWindow(dialogs=dialogs)
    qtbot.addWidget(window)
    try:
        assert window.open_project(tmp_path / "shared"), dialogs.errors
        assert window.model.rowCount() == 9
        assert window.panel.total_labels["labeled"].text() == "9"
        assert window.panel.class_labels["sadness"].text() == "3"
        window.show()
        qtbot.waitExposed(window)
        qtbot.waitUntil(lambda: window.model.thumb_state(0) == ThumbState.LOADED, timeout=10_000)
        assert not dialogs.errors
    finally:
        window.close()


def test_a_shared_folder_the_annotator_may_only_read_still_takes_their_labels(
    qtbot, tmp_path, postgres_url, monkeypatch
):
    """On a server the database is not in the folder: an annotator who may only read the shared
    folder opens it and labels; what would save files there (live refits) says why it cannot.
    SQLite, whose database is the folder's, is still refused. (Root may write anywhere, so the
    folder's mode is what the project is told; tests/test_project_safety.py runs as `nobody`.)"""
    import core.store.project as store_project
    from app.main_window import MainWindow
    from tests.test_app import FakeDialogs

    write_class_folders(tmp_path / "photos", {"happy": 2, "sad": 2})
    shared, local = tmp_path / "shared", tmp_path / "local"
    with Project.create(shared, postgres_url) as project:
        import_source(project, tmp_path / "photos", ImportOptions(faces="none", workers=1))
    Project.create(local).close()
    read_only = {shared.resolve(), local.resolve()}
    real_access = store_project.os.access
    monkeypatch.setattr(
        store_project.os, "access", lambda path, mode: Path(path) not in read_only and real_access(path, mode)
    )
    with pytest.raises(ProjectError, match="is read-only"):
        Project.open(local)
    with Project.open(shared) as project:
        assert not project.folder_writable
    dialogs = FakeDialogs()
    window = MainWindow(dialogs=dialogs)
    qtbot.addWidget(window)
    try:
        assert window.open_project(shared), dialogs.errors
        window.live_refit.set_enabled(True)
        assert window.live_refit.status_text() == "model: no live refits (the project folder is read-only for you)"
        assert not window.warm_worker.available
        face = window.model.face(0).id
        window.grid.select_row(0)
        window.labeling.label("surprise")
        with Project.open(shared) as project, project.session() as s:
            assert s.get(Label, face).label == "surprise"
    finally:
        window.close()


# Each writer labels random faces of a few, so the two keep meeting on the same faces, and prints
# what each set_label returned: the correction ids it logged and the label it gave.
WRITER = """
import json, random, sys, time
from pathlib import Path
from core.classes import class_names
from core.labeling import set_label
from core.store.project import Project

root, annotator, faces, count, go = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rng = random.Random(annotator)
with Project.open(root) as project:
    while not Path(go).exists():
        time.sleep(0.005)
    for _ in range(count):
        face, label = rng.choice(faces), rng.choice(class_names())
        step = set_label(project, face, label, annotator)
        if step is not None:
            print(json.dumps({"ids": list(step.correction_ids), "face": face, "label": label}), flush=True)
"""


def test_two_annotators_writing_at_once_lose_nothing(tmp_path, postgres_url):
    with Project.create(tmp_path / "shared", postgres_url) as project, project.session() as s:
        s.add_all(Image(path=f"f{i}.png", content_hash=f"{i:064x}", width=48, height=48) for i in range(2))
        s.flush()
        faces = list(s.scalars(select(Image.id)))
    go = tmp_path / "go"
    writers = {
        name: subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "shared"), name, json.dumps(faces), "120", str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("ana", "bob")
    }
    time.sleep(0.5)  # both are connected and waiting
    go.touch()
    written = {}
    for name, writer in writers.items():
        stdout, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
        written[name] = [json.loads(line) for line in stdout.splitlines()]
    assert all(written.values()), "each writer made changes"

    with Project.open(tmp_path / "shared") as project, project.session() as s:
        log = {c.id: c for c in s.scalars(select(Correction))}
        labels = {row.image_id: row for row in s.scalars(select(Label))}
    returned = [(cid, name, w["face"], w["label"]) for name, ws in written.items() for w in ws for cid in w["ids"]]
    assert len(log) == len(returned), "every logged correction was returned to its writer, and no more"
    for cid, name, face, label in returned:
        row = log[cid]
        assert (row.annotator, row.image_id, row.new_label) == (name, face, label)
    for face in faces:
        chain = sorted((c for c in log.values() if c.image_id == face), key=lambda c: c.id)
        # Each correction replaced the label the previous one gave: no writer read a stale label.
        assert [c.old_label for c in chain] == [None] + [c.new_label for c in chain[:-1]]
        if chain:
            assert (labels[face].label, labels[face].annotator) == (chain[-1].new_label, chain[-1].annotator)
        else:
            assert face not in labels
    per_annotator = {name: sum(len(w["ids"]) for w in ws) for name, ws in written.items()}
    assert Counter(c.annotator for c in log.values()) == per_annotator


# -- a server that is down, a wrong password, a missing database ----------------------------------
def _describe_database(root: Path, url: str) -> None:
    (root / PROJECT_FILE).write_text(
        json.dumps({"format": "fer-studio-project", "version": 1, "database": url}), encoding="utf-8"
    )


def _open_error(root: Path, capsys) -> str:
    assert cli_main(["stats", str(root)]) == EXIT_PROJECT
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(root) in err
    return err


@pytest.mark.parametrize("where", ["socket", "tcp"])
def test_a_project_whose_server_is_not_running_says_so(tmp_path, capsys, where):
    root = tmp_path / "shared"
    root.mkdir()
    (tmp_path / "no-server").mkdir()
    host = f"@/fer?host={tmp_path / 'no-server'}" if where == "socket" else "@127.0.0.1:9/fer"
    _describe_database(root, f"postgresql+psycopg://fer:s3cret{host}")
    err = _open_error(root, capsys)
    assert "cannot reach the database server of postgresql+psycopg://fer:***" in err
    assert "Is the server running" in err and "s3cret" not in err
    assert (".s.PGSQL" if where == "socket" else "Connection refused") in err


def test_a_missing_database_and_an_unknown_user_are_named(tmp_path, capsys, postgres_server):
    root = tmp_path / "shared"
    root.mkdir()
    _describe_database(root, postgres_server.url("fer_no_such_database"))
    assert "has no database 'fer_no_such_database': create it (createdb fer_no_such_database)" in _open_error(
        root, capsys
    )
    nobody = postgres_server.admin_url.set(username="fer_no_such_user")
    _describe_database(root, nobody.render_as_string(hide_password=False))
    assert "has no user 'fer_no_such_user'" in _open_error(root, capsys)
    with pytest.raises(ProjectError, match="has no database 'fer_also_missing'"):
        Project.create(tmp_path / "new", postgres_server.url("fer_also_missing"))
    assert not (tmp_path / "new" / PROJECT_FILE).exists()


@pytest.fixture
def password_user(postgres_server):
    """A login role with a password that the server checks (on the tests' own server its
    pg_hba.conf is told so; a server of yours must check passwords already)."""
    postgres_server.execute("DROP ROLE IF EXISTS fer_password_user")
    postgres_server.execute("CREATE ROLE fer_password_user LOGIN PASSWORD 'right-password'")
    local = postgres_server.local_server
    if local is not None:
        hba = Path(local.pgdata) / "pg_hba.conf"
        rule = "local all fer_password_user scram-sha-256\n"
        if rule not in hba.read_text():
            hba.write_text(rule + hba.read_text())
        postgres_server.execute("SELECT pg_reload_conf()")
    yield postgres_server.admin_url.set(username="fer_password_user")
    postgres_server.execute("DROP ROLE IF EXISTS fer_password_user")


def test_a_wrong_password_is_said_with_the_password_hidden(tmp_path, capsys, monkeypatch, password_user):
    # Only the URL's password counts here: none from the environment or a password file.
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    root = tmp_path / "shared"
    root.mkdir()
    wrong = password_user.set(password="wrong-password").render_as_string(hide_password=False)
    _describe_database(root, wrong)
    err = _open_error(root, capsys)
    if "refused the login" not in err:
        pytest.fail(f"the server let a wrong password in; it must check passwords for this test:\n{err}")
    assert "fer_password_user" in err and "correct the user or password" in err
    assert "wrong-password" not in err and "fer_password_user:***@" in err
    _describe_database(root, password_user.set(password=None).render_as_string(hide_password=False))
    assert "asks for a password that neither the database URL" in _open_error(root, capsys)


def test_a_project_opened_for_reading_cannot_write_to_the_server(tmp_path, postgres_url):
    with Project.create(tmp_path / "shared", postgres_url) as project, project.session() as s:
        s.add(Image(path="a.png", content_hash="a" * 64, width=48, height=48))
    with Project.open(tmp_path / "shared", read_only=True) as reader:
        with reader.session() as s:
            assert project_stats(s)["images"] == 1
        with pytest.raises(DBAPIError) as caught, reader.session() as s:
            s.add(Image(path="b.png", content_hash="b" * 64, width=48, height=48))
    problem = explain_storage_error(caught.value, tmp_path / "shared")
    assert problem is not None and problem.kind == READ_ONLY and "read-only" in problem.message
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM images")).scalar() == 1
    engine.dispose()
