"""Engine set-up, schema versioning and migrations.

SQLite files run in WAL mode with a busy timeout and foreign keys on, so a reader never blocks
the single writer and a process killed mid-write leaves the last committed state. Any other
SQLAlchemy URL (PostgreSQL for shared use) gets the same schema and migrations; a PostgreSQL
session waits for a lock as long as SQLite's busy timeout, then fails as busy, never forever.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeEngine

from core.store.errors import safe_url
from core.store.models import Base, Meta

SCHEMA_VERSION = 6
BUSY_TIMEOUT_MS = 15_000

# How make_engine opens a database: create it if missing, open an existing one only (opening
# must never leave a new empty database file behind), or read it without ever writing.
OPEN_CREATE = "rwc"
OPEN_EXISTING = "rw"
OPEN_READ_ONLY = "ro"
OPEN_MODES = (OPEN_CREATE, OPEN_EXISTING, OPEN_READ_ONLY)


class SchemaError(RuntimeError):
    """The database cannot be used by this version of the studio."""


@dataclass(frozen=True)
class Migration:
    """Moves a database from `to_version - 1` to `to_version`; runs inside one transaction."""

    to_version: int
    description: str
    apply: Callable[[Connection], None]


def _add_columns(table: str, columns: dict[str, TypeEngine]) -> Callable[[Connection], None]:
    """A migration step adding nullable columns. Types are spelled out here, not taken from
    models.py, so the step stays what it was when the model moves on."""

    def apply(conn: Connection) -> None:
        for name, column_type in columns.items():
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {column_type.compile(dialect=conn.dialect)}")

    return apply


def _add_run_lineage(conn: Connection) -> None:
    """Schema 3: a run's kind (every earlier run was trained), the run a refit started from,
    and when a superseded refit's per-face results were pruned."""
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN kind VARCHAR(16) DEFAULT 'train' NOT NULL")
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN parent_run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL")
    _add_columns("runs", {"predictions_pruned_at": DateTime()})(conn)


def _undo_by_log_position(conn: Connection) -> None:
    """Schema 5: an undone correction records the newest correction's id when it was undone.
    Rows undone before this schema get it from the times they kept (what redo compared until
    now): the newest correction logged at or before the undo, at least the row itself."""
    _add_columns("corrections", {"undone_after_id": Integer()})(conn)
    conn.exec_driver_sql(
        "UPDATE corrections SET undone_after_id = (SELECT MAX(c.id) FROM corrections AS c "
        "WHERE c.created_at <= corrections.undone_at OR c.id = corrections.id) WHERE undone_at IS NOT NULL"
    )


def _add_votes(conn: Connection) -> None:
    """Schema 6: corrections say whether they are an adjudication, and each annotator's current
    vote of a face is kept in `votes`, filled from the log (their newest correction of the face
    that is not undone). Labels stay as they were; the next change of a face decides its label
    from its votes."""
    conn.exec_driver_sql("ALTER TABLE corrections ADD COLUMN adjudicated BOOLEAN DEFAULT false NOT NULL")
    tables = MetaData()
    for referenced in ("images", "corrections"):  # only what the foreign keys name; not created
        Table(referenced, tables, Column("id", Integer, primary_key=True))
    votes = Table(
        "votes",
        tables,
        Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        Column("annotator", String(64), primary_key=True),
        Column("label", String(32)),
        Column("adjudicated", Boolean, nullable=False),
        Column("correction_id", Integer, ForeignKey("corrections.id", ondelete="CASCADE"), nullable=False),
        Column("created_at", DateTime, nullable=False),
        Index("ix_votes_annotator", "annotator"),
    )
    votes.create(conn)
    conn.exec_driver_sql(
        "INSERT INTO votes (image_id, annotator, label, adjudicated, correction_id, created_at) "
        "SELECT c.image_id, c.annotator, c.new_label, c.adjudicated, c.id, c.created_at FROM corrections AS c "
        "WHERE c.undone_at IS NULL AND c.id = (SELECT MAX(n.id) FROM corrections AS n "
        "WHERE n.image_id = c.image_id AND n.annotator = c.annotator AND n.undone_at IS NULL)"
    )


# Append a Migration here whenever SCHEMA_VERSION goes up; never edit a released one.
MIGRATIONS: list[Migration] = [
    Migration(
        2,
        "corrections keep the label row they replaced, for exact undo",
        _add_columns(
            "corrections", {"old_source": String(16), "old_annotator": String(64), "old_updated_at": DateTime()}
        ),
    ),
    Migration(3, "runs record their kind, a refit's parent run, and pruned predictions", _add_run_lineage),
    Migration(
        4,
        "faces record their detector, its score and key points, and the eye-line angle of their crop",
        _add_columns(
            "images",
            {"face_angle": Float(), "face_keypoints": JSON(), "face_detector": String(16), "face_score": Float()},
        ),
    ),
    Migration(5, "redo follows the corrections log's ids, not the clock", _undo_by_log_position),
    Migration(6, "each annotator's label of a face is a vote; adjudications are marked", _add_votes),
]


def _set_sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # NORMAL is crash-safe in WAL mode (a killed process loses nothing committed).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _set_sqlite_read_only_pragmas(dbapi_connection, _record) -> None:
    # journal_mode is left as it is: switching it is a write.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _set_postgresql_lock_timeout(dbapi_connection, _record) -> None:
    # Outside a transaction (the pool's connection is not autocommit), so it holds for the session.
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET lock_timeout = {int(BUSY_TIMEOUT_MS)}")
    cursor.close()
    dbapi_connection.autocommit = autocommit


def _sqlite_connector(path: Path, mode: str) -> Callable[[], sqlite3.Connection]:
    """Connects through a `file:` URI so that the open mode is SQLite's own: `rw` fails on a
    missing file instead of creating an empty one."""
    uri = f"file:{quote(str(path.absolute()))}?{_sqlite_uri_query(path, mode)}"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)

    return connect


def _sqlite_uri_query(path: Path, mode: str) -> str:
    if mode != OPEN_READ_ONLY:
        return f"mode={mode}"
    if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK):
        # Where it may, a reader opens read-write (query_only keeps it from writing) so that,
        # like any WAL reader, it removes the -wal and -shm files when it closes.
        return "mode=rw"
    if not os.access(path.parent, os.W_OK):
        # A WAL database needs its -shm file even to read; in a folder nobody may write to,
        # SQLite can only read it as immutable (nothing can change it from here anyway).
        return "mode=ro&immutable=1"
    return "mode=ro"


def make_engine(url: str, mode: str = OPEN_CREATE) -> Engine:
    """An engine for `url`; `mode` is one of OPEN_MODES (SQLite files honour all three, other
    databases are never created here and get read-only transactions in OPEN_READ_ONLY)."""
    if mode not in OPEN_MODES:
        raise ValueError(f"unknown open mode {mode!r}")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            engine = create_engine(url, creator=_sqlite_connector(Path(database), mode))
        else:
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        pragmas = _set_sqlite_read_only_pragmas if mode == OPEN_READ_ONLY else _set_sqlite_pragmas
        event.listen(engine, "connect", pragmas)
        return engine
    if parsed.get_backend_name() != "postgresql":
        return create_engine(url, pool_pre_ping=True)
    read_only = {"postgresql_readonly": True} if mode == OPEN_READ_ONLY else {}
    engine = create_engine(url, pool_pre_ping=True, execution_options=read_only)
    event.listen(engine, "connect", _set_postgresql_lock_timeout)
    return engine


def read_schema_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table("meta"):
        return None
    value = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar()
    return int(value) if value is not None else None


def _write_meta(conn: Connection, key: str, value: str) -> None:
    conn.execute(delete(Meta).where(Meta.key == key))
    conn.execute(insert(Meta).values(key=key, value=value))


def _backup_sqlite(conn: Connection, from_version: int) -> Path | None:
    database = conn.engine.url.database
    if conn.engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    backup = Path(database).with_name(f"{Path(database).name}.v{from_version}-{stamp}.bak")
    conn.exec_driver_sql("VACUUM INTO ?", (str(backup),))
    return backup


def prepare_schema(engine: Engine, *, create: bool, migrate: bool = True) -> int:
    """Create the schema (if `create` and the database is empty) or migrate it to the current one
    (if `migrate`; otherwise an older schema is an error).

    Returns the schema version found before any migration (0 for a new database).
    """
    with engine.connect() as conn:
        version = read_schema_version(conn)
        has_tables = bool(inspect(conn).get_table_names())
    if version is None:
        if has_tables:
            raise SchemaError(f"{safe_url(engine.url)} holds tables but is not a FER studio database")
        if not create:
            raise SchemaError(f"{safe_url(engine.url)} holds no FER studio database")
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
            _write_meta(conn, "schema_version", str(SCHEMA_VERSION))
            _write_meta(conn, "created_at", datetime.now(UTC).isoformat())
        return 0
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {version}, newer than this studio knows "
            f"({SCHEMA_VERSION}); update the studio to open it"
        )
    if version < SCHEMA_VERSION and not migrate:
        raise SchemaError(
            f"the database has schema version {version} and needs upgrading to {SCHEMA_VERSION}, "
            f"which cannot be done while reading only; open the project once with write access"
        )
    if version < SCHEMA_VERSION:
        with engine.connect() as conn:
            _backup_sqlite(conn, version)
        for migration in sorted(MIGRATIONS, key=lambda m: m.to_version):
            if migration.to_version <= version:
                continue
            with engine.begin() as conn:
                migration.apply(conn)
                _write_meta(conn, "schema_version", str(migration.to_version))
        with engine.connect() as conn:
            reached = read_schema_version(conn)
        if reached != SCHEMA_VERSION:
            raise SchemaError(f"no migration path from schema {reached} to {SCHEMA_VERSION}")
    return version


def integrity_ok(engine: Engine) -> bool:
    if engine.url.get_backend_name() != "sqlite":
        return True
    with engine.connect() as conn:
        return conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
