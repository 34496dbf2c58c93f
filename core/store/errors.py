"""Storage failures said plainly: a busy database, a full disk, a read-only folder, a database
server that cannot be reached or refuses the login.

The database driver reports these as `OperationalError: database is locked`, `disk I/O
error` or `connection failed: ...`; users need to know what happened to their work and what to
do. Every layer that shows errors (the CLI, the studio) asks `explain_storage_error` and shows
its message; the kind gives the CLI its exit code.
"""

from __future__ import annotations

import errno
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

BUSY = "busy"
DISK_FULL = "disk_full"
READ_ONLY = "read_only"
CONNECTION = "connection"  # a database server that cannot be reached or refuses the login
FAILED = "failed"

# Below this much free space an I/O error while writing is taken for a full disk.
FULL_DISK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class StorageProblem:
    kind: str  # BUSY, DISK_FULL, READ_ONLY, CONNECTION or FAILED
    message: str  # what happened, that nothing committed is lost, and what to do

    def __str__(self) -> str:
        return self.message


class StorageError(RuntimeError):
    """A storage failure already put in words (see `explain_storage_error`)."""

    def __init__(self, problem: StorageProblem):
        super().__init__(problem.message)
        self.problem = problem


def explain_storage_error(
    exc: BaseException, where: str | Path | None = None, database_url: str | URL | None = None
) -> StorageProblem | None:
    """The plain-words problem behind a database or file-system error, or None if it is not one.

    `where` names the project folder or database file, for the message and to check free space;
    `database_url`, where known, names a database server in connection problems (its password hidden).
    """
    if isinstance(exc, StorageError):
        return exc.problem
    text = _driver_message(exc).lower()
    place = f" ({where})" if where else ""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _disk_full(place)
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        # Not EACCES: an unreadable input file is bad input, not a storage failure.
        return StorageProblem(
            READ_ONLY,
            f"the file system{place} is read-only ({exc.filename or exc}); "
            f"nothing was saved by this action, and nothing saved before is lost",
        )
    if not isinstance(exc, (SQLAlchemyError, sqlite3.Error)):
        return None
    connection = _connection_problem(exc, database_url)
    if connection is not None:
        return connection
    if (
        "database is locked" in text
        or "database is busy" in text
        or "lock timeout" in text
        or "could not obtain lock" in text
        # PostgreSQL ended this transaction so that another could go on: nothing was changed.
        or "deadlock detected" in text
        or "could not serialize access" in text
    ):
        return StorageProblem(
            BUSY,
            f"the project{place} is busy: another program is writing to it. Nothing was changed; try again in a moment",
        )
    if "database or disk is full" in text or "no space left" in text or "disk full" in text:
        return _disk_full(place)
    if "disk i/o error" in text:
        if where is not None and _free_bytes(Path(where)) < FULL_DISK_BYTES:
            return _disk_full(place)
        return StorageProblem(
            FAILED,
            f"the disk reported an I/O error while writing the project{place}; "
            f"the change was not saved and what was saved before is kept",
        )
    if "read-only transaction" in text:
        return StorageProblem(
            READ_ONLY,
            f"the database server{place} took this action for a read-only one (a command that only reads, "
            f"or a standby server that accepts no writes); nothing was saved",
        )
    if "permission denied for" in text:
        return StorageProblem(
            READ_ONLY,
            f"the database user may not change the project{place} ({_driver_message(exc)}); nothing was saved. "
            f"Ask the server's administrator for write access",
        )
    if "readonly database" in text or "read-only" in text or "read only" in text:
        return StorageProblem(
            READ_ONLY,
            f"the project's database{place} is read-only; nothing was saved. Open it from a folder you can write to",
        )
    if "unable to open database file" in text:
        return StorageProblem(
            FAILED,
            f"the project's database{place} cannot be opened (missing, or in a folder that cannot be read or written)",
        )
    return StorageProblem(
        FAILED, f"the project's database{place} refused the action: {_driver_message(exc) or type(exc).__name__}"
    )


# What libpq says when no server answers at the address (it adds the socket or host and port).
_UNREACHABLE = (
    "is the server running",
    "connection refused",
    "could not translate host name",
    "name or service not known",
    "timeout expired",
    "server closed the connection unexpectedly",
    "the database system is shutting down",
    "the database system is starting up",
    "terminating connection due to administrator command",
)


def _connection_problem(exc: BaseException, database_url: str | URL | None) -> StorageProblem | None:
    """A database server that cannot be reached, refuses the login or lacks the database."""
    server = f"the database server of {safe_url(database_url)}" if database_url else "the database server"
    lines = _connection_lines(exc)
    text = " ".join(lines).lower()  # libpq's hint ("Is the server running ...?") is a line of its own
    detail = lines[0] if lines else type(exc).__name__
    if any(marker in text for marker in _UNREACHABLE):
        return StorageProblem(
            CONNECTION,
            f"cannot reach {server}: {detail}. Is the server running, and are the host and port right? "
            f"Nothing was changed, and nothing saved before is lost",
        )
    if "password authentication failed" in text or "authentication failed" in text:
        return StorageProblem(CONNECTION, f"{server} refused the login: {detail}; correct the user or password")
    if "no password supplied" in text:
        return StorageProblem(
            CONNECTION,
            f"{server} asks for a password that neither the database URL (user:password@host) nor ~/.pgpass gives",
        )
    missing = re.search(r'database "([^"]+)" does not exist', text)
    if missing:
        return StorageProblem(
            CONNECTION,
            f"{server} has no database {missing.group(1)!r}: create it (createdb {missing.group(1)}) "
            f"or correct the database name",
        )
    unknown_user = re.search(r'role "([^"]+)" does not exist', text)
    if unknown_user:
        return StorageProblem(CONNECTION, f"{server} has no user {unknown_user.group(1)!r}: correct the user name")
    return None


def safe_url(url: str | URL) -> str:
    """A database URL fit to show: its password replaced by ***, a socket folder as a path."""
    try:
        return unquote(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return "(not a database URL)"


def _connection_lines(exc: BaseException) -> list[str]:
    """libpq's own words, line by line, without psycopg's prefix and the FATAL tag."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [re.sub(r"\s+", " ", line.replace("FATAL:", "")).strip() for line in str(original).splitlines()]
    lines = [line for line in lines if line]
    if lines:
        lines[0] = re.sub(r"^connection (failed|is bad): ", "", lines[0])
    return lines


def _disk_full(place: str) -> StorageProblem:
    return StorageProblem(
        DISK_FULL,
        f"the disk is full{place}: the change was not saved, and nothing "
        f"saved before is lost. Free some space and try again",
    )


def _driver_message(exc: BaseException) -> str:
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return str(original).strip().splitlines()[0] if str(original).strip() else ""


def _free_bytes(where: Path) -> int:
    path = where
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return FULL_DISK_BYTES  # unknown: do not claim a full disk
