"""Opening projects and storage failures (issue 19, items 9 and 10): an odd database value in
project.json, a read-only project folder, a database held busy by another writer and a full
database each give a clear message and a defined exit code, never a traceback, and lose nothing."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

import core.store.db as store_db
from app.error_hook import ErrorHook, describe_uncaught
from core.cli import main as cli_main
from core.cli.common import EXIT_BUSY, EXIT_PROJECT, EXIT_STORAGE
from core.store.errors import BUSY, DISK_FULL, explain_storage_error
from core.store.models import Image
from core.store.project import PROJECT_FILE, Project

REPO = Path(__file__).resolve().parent.parent


def _project_with_faces(root: Path, count: int = 3, database_url: str | None = None) -> Path:
    """A project with `count` unlabeled train faces (rows only: labeling needs no pixels)."""
    with Project.create(root, database_url) as project, project.session() as session:
        session.add_all(
            Image(path=f"face_{i}.png", content_hash=f"{i:064x}", width=48, height=48) for i in range(count)
        )
    return root


def _set_database(root: Path, value) -> None:
    (root / PROJECT_FILE).write_text(
        json.dumps({"format": "fer-studio-project", "version": 1, "database": value}), encoding="utf-8"
    )


@pytest.mark.parametrize(
    "value, says",
    [
        ("http://example.com/db", "not a kind of database"),
        ("file:///etc/passwd", "not a kind of database"),
        ("", "must be a database URL"),
        (42, "must be a database URL"),
        (None, "must be a database URL"),
        ("not a url at all", "is not a database URL"),
        ("mysql://user@localhost/db", "not installed"),
        ("postgresql+asyncpg://user@localhost/db", "asynchronous"),
    ],
)
def test_odd_database_values_are_project_errors(tmp_path, capsys, value, says):
    root = _project_with_faces(tmp_path / "p")
    _set_database(root, value)
    assert cli_main(["stats", str(root)]) == EXIT_PROJECT
    err = capsys.readouterr().err
    assert says in err and str(root / PROJECT_FILE) in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["stats", "history", "label"])
def test_no_database_file_is_created_by_opening(tmp_path, capsys, command):
    root = _project_with_faces(tmp_path / "p")
    _set_database(root, "sqlite:///../outside.db")
    args = [command, str(root)] + (["1", "happiness"] if command == "label" else [])
    assert cli_main(args) == EXIT_PROJECT
    assert "outside the project folder" in capsys.readouterr().err
    missing = tmp_path / "elsewhere" / "gone.db"
    _set_database(root, f"sqlite:///{missing}")
    assert cli_main(args) == EXIT_PROJECT
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "outside.db").exists() and not missing.exists()
    assert not missing.parent.exists()


def test_busy_database_is_exit_4_and_loses_nothing(tmp_path, capsys, monkeypatch):
    root = _project_with_faces(tmp_path / "p")
    assert cli_main(["label", str(root), "1", "happiness", "--annotator", "ann"]) == 0
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 300)
    holder = sqlite3.connect(root / "project.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        assert cli_main(["label", str(root), "2", "anger", "--annotator", "ann"]) == EXIT_BUSY
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert "busy" in err and "try again" in err and "Traceback" not in err
    with Project.open(root) as project:
        from core.labeling import history

        assert [(e.face_id, e.new_label) for e in history(project)] == [(1, "happiness")]
    assert cli_main(["label", str(root), "2", "anger", "--annotator", "ann"]) == 0  # and it works after


def test_a_face_locked_on_postgresql_is_exit_4_and_loses_nothing(tmp_path, capsys, monkeypatch, postgres_url):
    root = _project_with_faces(tmp_path / "p", database_url=postgres_url)
    assert cli_main(["label", str(root), "1", "happiness", "--annotator", "ann"]) == 0
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 300)  # the server's lock_timeout for new sessions
    holder = create_engine(postgres_url)
    try:
        with holder.begin() as conn:  # another program is changing face 2
            conn.execute(text("SELECT id FROM images WHERE id = 2 FOR UPDATE"))
            assert cli_main(["label", str(root), "2", "anger", "--annotator", "ann"]) == EXIT_BUSY
            conn.rollback()
    finally:
        holder.dispose()
    err = capsys.readouterr().err
    assert "busy" in err and "try again" in err and "Traceback" not in err
    with Project.open(root) as project:
        from core.labeling import history

        assert [(e.face_id, e.new_label) for e in history(project)] == [(1, "happiness")]
    assert cli_main(["label", str(root), "2", "anger", "--annotator", "ann"]) == 0


def test_full_database_is_exit_5_and_loses_nothing(tmp_path, capsys, monkeypatch):
    root = _project_with_faces(tmp_path / "p", count=400)
    assert cli_main(["label", str(root), "1", "happiness", "--annotator", "ann"]) == 0
    pages = sqlite3.connect(root / "project.db").execute("PRAGMA page_count").fetchone()[0]
    plain_pragmas = store_db._set_sqlite_pragmas

    def no_room_to_grow(connection, record):  # SQLite's own "database or disk is full"
        plain_pragmas(connection, record)
        connection.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(store_db, "_set_sqlite_pragmas", no_room_to_grow)
    faces = ",".join(str(i) for i in range(2, 401))
    code = cli_main(["label", str(root), faces, "sadness", "--annotator", "a-rather-long-annotator-name-to-fill-pages"])
    err = capsys.readouterr().err
    assert code == EXIT_STORAGE, err
    assert "disk is full" in err and "nothing saved before is lost" in err and "Traceback" not in err
    monkeypatch.setattr(store_db, "_set_sqlite_pragmas", plain_pragmas)
    with Project.open(root) as project:
        from core.labeling import history

        assert [(e.face_id, e.new_label) for e in history(project)] == [(1, "happiness")]


def _locked_error(tmp_path: Path) -> OperationalError:
    root = _project_with_faces(tmp_path / "locked")
    holder = sqlite3.connect(root / "project.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Project.open(root) as project:
            project.engine.dispose()
            connection = project.engine.raw_connection()
            connection.driver_connection.execute("PRAGMA busy_timeout=50")
            try:
                connection.driver_connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                return OperationalError("BEGIN IMMEDIATE", {}, exc)
            finally:
                connection.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    raise AssertionError("the database was not locked")


def test_storage_errors_in_plain_words(tmp_path):
    busy = explain_storage_error(_locked_error(tmp_path), tmp_path)
    assert busy.kind == BUSY and "another program is writing" in busy.message
    full = explain_storage_error(OSError(28, "No space left on device"), tmp_path)
    assert full.kind == DISK_FULL
    assert explain_storage_error(ValueError("not storage")) is None
    assert explain_storage_error(PermissionError(13, "Permission denied", "in.png")) is None


def test_studio_error_hook_shows_a_message_instead_of_crashing(tmp_path, capsys):
    shown: list[tuple[str, str]] = []
    hook = ErrorHook(lambda title, message: shown.append((title, message)), lambda: tmp_path)
    hook.install()
    try:
        assert sys.excepthook is hook
        error = _locked_error(tmp_path)
        hook(type(error), error, None)
        bug = KeyError("x")
        hook(KeyError, bug, None)
    finally:
        hook.uninstall()
    assert sys.excepthook is not hook
    assert shown[0][0] == "Not saved" and "another program is writing" in shown[0][1]
    assert shown[1] == describe_uncaught(bug) and shown[1][0] == "Unexpected error"
    assert "KeyError" in capsys.readouterr().err  # the traceback stays on the terminal


# -- a project folder nobody may write to ---------------------------------------------------------
def _as_reader(args: list[str], home: Path) -> subprocess.CompletedProcess:
    """Run main.py as a user who may read but not write the project: root ignores file modes, so
    as root the command runs as `nobody`."""
    command = [sys.executable, str(REPO / "main.py"), *args]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    env = {**os.environ, "FER_STUDIO_HOME": str(home), "HOME": str(home), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def read_only_project():
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.fail("running as root without setpriv: cannot make a folder read-only for the test")
    base = Path(tempfile.mkdtemp(prefix="fer-read-only-"))
    try:
        root = _project_with_faces(base / "project")
        assert cli_main(["label", str(root), "1", "happiness", "--annotator", "ann"]) == 0
        (base / "out").mkdir()
        (base / "home").mkdir()
        for folder in (base / "out", base / "home"):
            folder.chmod(0o777)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        base.chmod(0o755)
        yield root, base
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(base)


def test_a_reader_gets_thumbnails_in_their_own_cache(read_only_project):
    """A team's shared folder that an annotator may only read: the studio's thumbnails go to
    their own cache (core/thumbnails.py), and the project folder is left as it was."""
    root, base = read_only_project
    from PIL import Image as PILImage

    for i in range(3):  # the fixture's faces, as pixels (root writes past the folder's mode)
        pixels = root / f"face_{i}.png"
        PILImage.new("RGB", (48, 48), (40 * i, 90, 160)).save(pixels)
        pixels.chmod(0o444)
    before = _snapshot(root)
    script = "\n".join(
        [
            "import sys",
            "from core.store.project import Project",
            "from core.store.queries import list_faces",
            "from core.thumbnails import ensure_thumbnail",
            "with Project.open(sys.argv[1], read_only=True) as p:",
            "    with p.session() as s:",
            "        faces = list_faces(s)",
            "    print(*(ensure_thumbnail(p, f) for f in faces), sep='\\n')",
        ]
    )
    command = [sys.executable, "-c", script, str(root)]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    home = base / "home"
    env = {**os.environ, "FER_STUDIO_HOME": str(home), "HOME": str(home)}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    made = [Path(line) for line in done.stdout.splitlines()]
    assert made and all(path.is_file() and home / "cache" / "thumbnails" in path.parents for path in made)
    assert _snapshot(root) == before


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_read_only_commands_work_on_a_read_only_folder(read_only_project):
    root, base = read_only_project
    before = _snapshot(root)
    stats = _as_reader(["stats", str(root), "--json"], base / "home")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["labeled"] == 1
    history = _as_reader(["history", str(root)], base / "home")
    assert history.returncode == 0 and "happiness" in history.stdout, history.stderr
    export = _as_reader(["export", str(root), str(base / "out" / "x")], base / "home")
    assert export.returncode == 0, export.stderr
    assert (base / "out" / "x" / "labels.csv").is_file()
    change = _as_reader(["label", str(root), "2", "anger"], base / "home")
    assert change.returncode == EXIT_PROJECT and "read-only" in change.stderr, change.stderr
    assert "Traceback" not in stats.stderr + history.stderr + export.stderr + change.stderr
    assert _snapshot(root) == before
