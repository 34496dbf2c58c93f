"""Opening only regular files: a FIFO would block the reader forever and a device never ends.

Every reader of user-named files (images, CSV manifests) goes through `open_regular`, which
checks the type before opening and again on the open descriptor, so a path swapped for a FIFO
in between is still refused and never waited on.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

# O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer (the fstat below
# then refuses it); it changes nothing for regular files. O_NOCTTY: a terminal device never
# becomes our controlling terminal. Both are absent on Windows, which has no FIFOs in paths.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)

_KINDS = (
    (stat.S_ISDIR, "folder"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


class NotRegularFile(OSError):
    """A path that exists but is no regular file; str() is e.g. 'not a regular file (FIFO)'."""


def file_kind(mode: int) -> str:
    """'FIFO', 'character device' ... for an st_mode; 'regular file' for a plain file."""
    if stat.S_ISREG(mode):
        return "regular file"
    return next((name for test, name in _KINDS if test(mode)), "special file")


def not_regular_reason(mode: int) -> str | None:
    """Why a file of this st_mode is not read, or None for a regular file."""
    return None if stat.S_ISREG(mode) else f"not a regular file ({file_kind(mode)})"


def open_regular(path: str | os.PathLike) -> tuple[BinaryIO, int]:
    """Open a regular file for binary reading; returns (handle, size in bytes).

    Raises FileNotFoundError, NotRegularFile, or another OSError; nothing else is opened."""
    reason = not_regular_reason(os.stat(path).st_mode)  # a device is not even opened
    if reason:
        raise NotRegularFile(reason)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        reason = not_regular_reason(info.st_mode)
        if reason:
            raise NotRegularFile(reason)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise
