"""Exit codes, errors and helpers shared by the command modules."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Iterator

from core.store.project import Project, ProjectError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PROJECT = 3
EXIT_INTERRUPTED = 130


class CommandError(RuntimeError):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def opened_project(path: str, *, create: bool = False) -> Iterator[Project]:
    try:
        project = Project.open_or_create(path) if create else Project.open(path)
    except ProjectError as exc:
        raise CommandError(str(exc), EXIT_PROJECT) from None
    try:
        yield project
    finally:
        project.close()


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
