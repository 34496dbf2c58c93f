"""Storage failures said plainly: a busy database, a full disk, a read-only folder.

The database driver reports these as `OperationalError: database is locked` or `disk I/O
error`; users need to know what happened to their work and what to do. Every layer that shows
errors (the CLI, the studio) asks `explain_storage_error` and shows its message; the kind gives
the CLI its exit code.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

BUSY = "busy"
DISK_FULL = "disk_full"
READ_ONLY = "read_only"
FAILED = "failed"

# Below this much free space an I/O error while writing is taken for a full disk.
FULL_DISK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class StorageProblem:
    kind: str  # BUSY, DISK_FULL, READ_ONLY or FAILED
    message: str  # what happened, that nothing committed is lost, and what to do

    def __str__(self) -> str:
        return self.message


class StorageError(RuntimeError):
    """A storage failure already put in words (see `explain_storage_error`)."""

    def __init__(self, problem: StorageProblem):
        super().__init__(problem.message)
        self.problem = problem


def explain_storage_error(exc: BaseException, where: str | Path | None = None) -> StorageProblem | None:
    """The plain-words problem behind a database or file-system error, or None if it is not one.

    `where` names the project folder or database file, for the message and to check free space.
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
    if (
        "database is locked" in text
        or "database is busy" in text
        or "lock timeout" in text
        or "could not obtain lock" in text
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
