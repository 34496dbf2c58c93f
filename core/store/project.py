"""A project: a folder holding project.json, the database (SQLite by default) and caches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from core.store.db import OPEN_CREATE, OPEN_EXISTING, OPEN_READ_ONLY, make_engine, prepare_schema
from core.store.errors import explain_storage_error
from core.store.runs import reap_dead_runs

PROJECT_FILE = "project.json"
PROJECT_FORMAT = "fer-studio-project"
DEFAULT_DB_NAME = "project.db"
CACHE_DIRS = ("faces", "thumbnails", "features", "checkpoints")


class ProjectError(RuntimeError):
    """A project folder that cannot be created or opened; the message says why."""


class Project:
    """An open project. Use `Project.create` / `Project.open`; close it (or use `with`)."""

    def __init__(self, root: Path, database_url: str, engine: Engine, read_only: bool = False):
        self.root = root
        self.database_url = database_url
        self.engine = engine
        self.read_only = read_only  # opened for reading: nothing in the folder is written
        # False: this user may not write the folder (a shared project on a server): labels go to the
        # database, thumbnails to the user's own cache, and nothing that saves files (training,
        # refits, feature caches) can run here.
        self.folder_writable = True
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, database_url: str | None = None) -> Project:
        root = Path(root).expanduser().resolve()
        if (root / PROJECT_FILE).exists():
            raise ProjectError(f"{root} is already a project")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} exists and is not a folder")
        stored_url = database_url or f"sqlite:///{DEFAULT_DB_NAME}"
        url = database_url_for(root, stored_url, "--database-url")
        root.mkdir(parents=True, exist_ok=True)
        engine = _engine_or_error(root, url, OPEN_CREATE)
        try:
            prepare_schema(engine, create=True)
        except Exception as exc:
            engine.dispose()
            raise ProjectError(
                f"cannot create the database of {root}: {explain_storage_error(exc, root, url) or exc}"
            ) from exc
        descriptor = {"format": PROJECT_FORMAT, "version": 1, "database": stored_url}
        # Written last and atomically: a folder without project.json was never a finished project.
        tmp = root / (PROJECT_FILE + ".tmp")
        tmp.write_text(json.dumps(descriptor, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, root / PROJECT_FILE)
        project = cls(root, stored_url, engine)
        project._ensure_cache_dirs()
        return project

    @classmethod
    def open(cls, root: str | os.PathLike, *, read_only: bool = False) -> Project:
        """Open a project. `read_only`: nothing in the folder is written (no cache folders, no
        migration, no tidying of dead runs), so it works on a folder nobody may write to."""
        root = Path(root).expanduser().resolve()
        descriptor_path = root / PROJECT_FILE
        if not descriptor_path.is_file():
            raise ProjectError(
                f"{root} is not a project (no {PROJECT_FILE}); create one with: python main.py init {root}"
            )
        stored_url = _read_descriptor(descriptor_path)
        url = database_url_for(root, stored_url, f"{descriptor_path}: 'database'")
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            raise ProjectError(
                f"the database file {url.database} named in {descriptor_path} does not exist (moved or deleted?)"
            )
        folder_writable = os.access(root, os.W_OK)
        # SQLite keeps its database (and its journal) in the folder; a server's database can be
        # changed from a folder the annotator may only read (a team's shared images).
        if not read_only and not folder_writable and url.get_backend_name() == "sqlite":
            raise ProjectError(
                f"the project folder {root} is read-only: it can be read (stats, history, export) but not changed"
            )
        engine = _engine_or_error(root, url, OPEN_READ_ONLY if read_only else OPEN_EXISTING)
        try:
            prepare_schema(engine, create=False, migrate=not read_only)
        except Exception as exc:
            engine.dispose()
            raise ProjectError(
                f"cannot open the database of {root}: {explain_storage_error(exc, root, url) or exc}"
            ) from exc
        project = cls(root, stored_url, engine, read_only=read_only)
        project.folder_writable = folder_writable
        if not read_only:
            if folder_writable:
                project._ensure_cache_dirs()
            with project.session() as session:
                reap_dead_runs(session)
        return project

    @classmethod
    def open_or_create(cls, root: str | os.PathLike) -> Project:
        if (Path(root).expanduser() / PROJECT_FILE).exists():
            return cls.open(root)
        return cls.create(root)

    @staticmethod
    def is_project(root: str | os.PathLike) -> bool:
        return (Path(root).expanduser() / PROJECT_FILE).is_file()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sessions ----------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session for a change that reads, then writes what it read (labels and their log).

        It holds the database's write lock from its first statement to its commit, so what it
        read cannot change under it. SQLite: BEGIN IMMEDIATE (pysqlite would begin only at the
        first write, after the reads). Other databases: the caller locks the rows it changes
        (SELECT ... FOR UPDATE)."""
        with self.session() as session:
            if self.engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    # -- paths -------------------------------------------------------------------------------
    def cache_dir(self, name: str) -> Path:
        if name not in CACHE_DIRS:
            raise ValueError(f"unknown cache folder {name!r}")
        return self.root / name

    def _ensure_cache_dirs(self) -> None:
        for name in CACHE_DIRS:
            (self.root / name).mkdir(exist_ok=True)

    def store_path(self, path: str | os.PathLike) -> str:
        """How a file path is recorded: relative to the project when inside it, else absolute."""
        absolute = Path(path).expanduser().resolve()
        try:
            return absolute.relative_to(self.root).as_posix()
        except ValueError:
            return str(absolute)

    def resolve_path(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.root / path


# -- project.json and the database URL ---------------------------------------------------------
def _read_descriptor(path: Path) -> str:
    """The stored database URL from project.json, or a ProjectError naming the file."""
    try:
        descriptor = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(descriptor, dict):
            raise ValueError("it holds no JSON object")
        if descriptor.get("format") != PROJECT_FORMAT:
            raise ValueError(f"format is {descriptor.get('format')!r}")
        if "database" not in descriptor:
            raise ValueError("it names no 'database'")
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise ProjectError(f"{path} is damaged: {exc}") from exc
    return descriptor["database"]


def database_url_for(root: Path, stored: object, where: str) -> URL:
    """The SQLAlchemy URL a project's stored database value means, checked before anything is
    opened or created: a URL of a database kind the studio can use, whose driver is installed.
    A relative SQLite path is relative to the project folder and must stay inside it, so the
    folder can be moved or shared as a whole. `where` names the value in error messages."""
    if not isinstance(stored, str) or not stored.strip():
        raise ProjectError(f"{where} must be a database URL such as sqlite:///{DEFAULT_DB_NAME}, not {stored!r}")
    try:
        url = make_url(stored)
    except ArgumentError:
        raise ProjectError(
            f"{where} {stored!r} is not a database URL (expected e.g. "
            f"sqlite:///{DEFAULT_DB_NAME} or postgresql+psycopg://user@host/db)"
        ) from None
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise ProjectError(
            f"{where} {stored!r}: {url.drivername!r} is not a kind of database the "
            f"studio can use (SQLite or PostgreSQL)"
        ) from None
    if getattr(dialect, "is_async", False):
        raise ProjectError(
            f"{where} {stored!r}: the driver {url.drivername!r} is asynchronous; use a "
            f"synchronous one (e.g. postgresql+psycopg)"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ProjectError(
            f"{where} {stored!r} needs the database driver {exc.name or url.drivername!r}, which is not installed"
        ) from None
    if url.get_backend_name() == "sqlite":
        return _sqlite_url_in(root, url, stored, where)
    return url


def _sqlite_url_in(root: Path, url: URL, stored: str, where: str) -> URL:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ProjectError(f"{where} {stored!r}: a project's SQLite database must be a file path")
    path = Path(database)
    if path.is_absolute():
        return url
    inside = (root / path).resolve()
    if not inside.is_relative_to(root):
        raise ProjectError(
            f"{where} {stored!r} points outside the project folder; use an absolute path for a database kept elsewhere"
        )
    return url.set(database=str(inside))


def _engine_or_error(root: Path, url: URL, mode: str) -> Engine:
    try:
        return make_engine(url.render_as_string(hide_password=False), mode)
    except Exception as exc:  # a URL the driver itself rejects (bad port, bad query options)
        raise ProjectError(f"cannot use the database of {root}: {exc}") from exc
