"""Shared fixtures. Every test runs offline, offscreen, with the studio's home in a temp folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The studio's warm worker (a torch process per window) runs only where a test turns it on
# (tests/test_app_live_refit.py).
os.environ.setdefault("FER_STUDIO_LIVE_REFIT", "0")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Keep the user's real settings and demo project untouched."""
    home = tmp_path_factory.mktemp("studio-home")
    monkeypatch.setenv("FER_STUDIO_HOME", str(home))
    return home


@pytest.fixture
def project(tmp_path):
    from core.store.project import Project

    proj = Project.create(tmp_path / "proj")
    yield proj
    proj.close()


# -- the store on both backends -----------------------------------------------------------------
# Store tests run on SQLite and on a live PostgreSQL server. The suite starts its own throwaway
# server (the pgserver wheel ships one) unless this variable names a server of yours, as a
# SQLAlchemy URL of a database the tests may connect to with the right to create databases, e.g.
# postgresql+psycopg://me:secret@localhost/postgres; it must check passwords (the wrong-password
# test logs in as a role it creates). The tests never skip for want of a server.
POSTGRES_URL_ENV = "FER_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")
SQLITE_URL = "sqlite:///project.db"  # the default, in the project folder


class PostgresForTests:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, admin_url: str, local_server=None):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        self.admin_url = make_url(admin_url)
        self.local_server = local_server  # the pgserver handle, or None for FER_TEST_POSTGRES_URL's server
        self._admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def url(self, database: str) -> str:
        """A SQLAlchemy URL of `database` on this server (password included, as project.json keeps it)."""
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def execute(self, statement: str) -> None:
        """One statement on the maintenance database, outside a transaction (CREATE DATABASE ...)."""
        with self._admin.connect() as conn:
            conn.exec_driver_sql(statement)

    def create_database(self) -> str:
        import uuid

        name = f"fer_test_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE ends connections a test left open (a subprocess's, a pool a test did not dispose).
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self._admin.dispose()


def _external_postgres(url: str) -> PostgresForTests:
    from sqlalchemy.exc import SQLAlchemyError

    from core.store.errors import explain_storage_error

    server = PostgresForTests(url)
    try:
        server.execute("SELECT 1")
        return server
    except SQLAlchemyError as exc:
        problem = str(explain_storage_error(exc, database_url=server.admin_url) or exc)
    pytest.fail(f"{POSTGRES_URL_ENV} cannot be used: {problem}", pytrace=False)


def _throwaway_postgres(folder: Path) -> PostgresForTests:
    try:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (containers, CI) and falls back to /tmp.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            import pgserver

        handle = pgserver.get_server(folder / "data", cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - whatever keeps the server from starting is one clear failure
        pytest.fail(
            f"could not start the tests' PostgreSQL server (pgserver, in {folder}): {type(exc).__name__}: {exc}. "
            f"Install the test extra (pip install -e .[test]) or name a server of yours in {POSTGRES_URL_ENV}",
            pytrace=False,
        )
    # pgserver listens on a unix socket in the data folder only: no port to collide with.
    socket_dir = handle.get_postmaster_info().socket_dir
    server = PostgresForTests(f"postgresql+psycopg://postgres@/postgres?host={socket_dir}", handle)
    # A throwaway server need not survive a power cut: without fsync a test database is made in
    # a third of the time.
    server.execute("ALTER SYSTEM SET fsync = off")
    server.execute("SELECT pg_reload_conf()")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> PostgresForTests:
    """The session's PostgreSQL server: started on first use (about a second), stopped at the end."""
    external = os.environ.get(POSTGRES_URL_ENV)
    if external:
        server = _external_postgres(external)
        yield server
        server.close()
        return
    # Not under pytest's basetemp: the server runs as another user (pgserver's, when the tests run
    # as root), and every pytest that starts on the machine makes pytest-of-USER private again,
    # which takes the server's data folder away from it in mid-session.
    folder = Path(tempfile.mkdtemp(prefix="fer-test-postgres-"))
    try:
        server = _throwaway_postgres(folder)
        yield server
        server.close()
        server.local_server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def new_database(request):
    """A factory: new_database(backend) gives the URL of a new, empty database of that backend
    ("sqlite": the default file in the project folder; "postgresql": a uniquely named database on
    the session's server, dropped after the test). Close the projects on it before the test ends."""
    made: list[tuple[PostgresForTests, str]] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return SQLITE_URL
        if backend != "postgresql":
            raise ValueError(f"unknown store backend {backend!r}; one of {BACKENDS}")
        server = request.getfixturevalue("postgres_server")
        name = server.create_database()
        made.append((server, name))
        return server.url(name)

    yield make
    for server, name in made:
        server.drop_database(name)


@pytest.fixture
def postgres_url(new_database) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return new_database("postgresql")


@pytest.fixture(params=BACKENDS)
def store_backend(request) -> str:
    """Runs a test once per store backend; its id ("sqlite", "postgresql") is in the test name."""
    return request.param


@pytest.fixture
def database_url(store_backend, new_database) -> str:
    """The URL to create a project with, on the backend of `store_backend`."""
    return new_database(store_backend)


@pytest.fixture
def store_project(tmp_path, database_url):
    """A new project in tmp_path/"proj" whose database is on each backend in turn."""
    from core.store.project import Project

    proj = Project.create(tmp_path / "proj", database_url=database_url)
    yield proj
    proj.close()  # before new_database drops the database
