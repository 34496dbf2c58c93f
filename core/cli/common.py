"""Exit codes, errors and helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from core.store.errors import BUSY, CONNECTION, StorageProblem
from core.store.project import Project, ProjectError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PROJECT = 3  # the project cannot be opened or created (its database server unreachable too)
EXIT_BUSY = 4  # another program held the project's write lock past the busy timeout: try again
EXIT_STORAGE = 5  # the disk is full, read-only or failed: the action was not saved
EXIT_INTERRUPTED = 130


class CommandError(RuntimeError):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def storage_exit_code(problem: StorageProblem) -> int:
    return {BUSY: EXIT_BUSY, CONNECTION: EXIT_PROJECT}.get(problem.kind, EXIT_STORAGE)


@contextmanager
def opened_project(path: str, *, create: bool = False, read_only: bool = False) -> Iterator[Project]:
    """The project at `path`, closed afterwards. `read_only` for commands that only read: they
    then write nothing in the folder and work where it cannot be written."""
    try:
        if create:
            project = Project.open_or_create(path)
        else:
            project = Project.open(path, read_only=read_only)
    except ProjectError as exc:
        raise CommandError(str(exc), EXIT_PROJECT) from None
    try:
        yield project
    finally:
        project.close()


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
