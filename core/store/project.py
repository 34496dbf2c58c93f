"""A project: a folder holding project.json, the database (SQLite by default) and caches."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.store.db import make_engine, prepare_schema
from core.store.runs import reap_dead_runs

PROJECT_FILE = "project.json"
PROJECT_FORMAT = "fer-studio-project"
DEFAULT_DB_NAME = "project.db"
CACHE_DIRS = ("faces", "thumbnails", "features", "checkpoints")


class ProjectError(RuntimeError):
    """A project folder that cannot be created or opened; the message says why."""


class Project:
    """An open project. Use `Project.create` / `Project.open`; close it (or use `with`)."""

    def __init__(self, root: Path, database_url: str, engine: Engine):
        self.root = root
        self.database_url = database_url
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, database_url: str | None = None) -> "Project":
        root = Path(root).expanduser().resolve()
        if (root / PROJECT_FILE).exists():
            raise ProjectError(f"{root} is already a project")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        stored_url = database_url or f"sqlite:///{DEFAULT_DB_NAME}"
        engine = make_engine(cls._absolute_url(root, stored_url))
        prepare_schema(engine, create=True)
        descriptor = {"format": PROJECT_FORMAT, "version": 1, "database": stored_url}
        # Written last and atomically: a folder without project.json was never a finished project.
        tmp = root / (PROJECT_FILE + ".tmp")
        tmp.write_text(json.dumps(descriptor, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, root / PROJECT_FILE)
        project = cls(root, stored_url, engine)
        project._ensure_cache_dirs()
        return project

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Project":
        root = Path(root).expanduser().resolve()
        descriptor_path = root / PROJECT_FILE
        if not descriptor_path.is_file():
            raise ProjectError(f"{root} is not a project (no {PROJECT_FILE}); create one with: "
                               f"python main.py init {root}")
        try:
            descriptor = json.loads(descriptor_path.read_text(encoding="utf-8"))
            stored_url = descriptor["database"]
            if descriptor.get("format") != PROJECT_FORMAT:
                raise ValueError(f"format is {descriptor.get('format')!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ProjectError(f"{descriptor_path} is damaged: {exc}") from exc
        engine = make_engine(cls._absolute_url(root, stored_url))
        try:
            prepare_schema(engine, create=False)
        except Exception as exc:
            engine.dispose()
            raise ProjectError(f"cannot open the database of {root}: {exc}") from exc
        project = cls(root, stored_url, engine)
        project._ensure_cache_dirs()
        with project.session() as session:
            reap_dead_runs(session)
        return project

    @classmethod
    def open_or_create(cls, root: str | os.PathLike) -> "Project":
        if (Path(root).expanduser() / PROJECT_FILE).exists():
            return cls.open(root)
        return cls.create(root)

    @staticmethod
    def is_project(root: str | os.PathLike) -> bool:
        return (Path(root).expanduser() / PROJECT_FILE).is_file()

    @staticmethod
    def _absolute_url(root: Path, url: str) -> str:
        # A relative SQLite path in project.json is relative to the project folder, so the
        # folder can be moved or shared as a whole.
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(root / url[len(prefix):])
        return url

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Project":
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
