"""The studio's last line of defence: an error nobody caught becomes a message, not a crash.

A slot that raises (a busy database, a full disk, a bug) would otherwise print a traceback to a
terminal the user may not have, or end the process under some Qt builds. Storage failures get
their plain words from core.store.errors; anything else is reported as unexpected, with the
traceback kept on stderr for a bug report. The studio keeps running either way: nothing saved is
lost, because every change is one database transaction that either committed or did not.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from core.store.errors import explain_storage_error

ShowError = Callable[[str, str], None]  # (title, message), e.g. Dialogs.error


def describe_uncaught(exc: BaseException, project_root: Path | None = None) -> tuple[str, str]:
    """The title and message to show for an error no code path handled."""
    problem = explain_storage_error(exc, project_root)
    if problem is not None:
        return "Not saved", problem.message[0].upper() + problem.message[1:] + "."
    return "Unexpected error", (
        f"Something went wrong that the studio did not expect:\n\n"
        f"{type(exc).__name__}: {exc}\n\nNothing saved before is lost. The "
        f"details are printed on the terminal for a bug report."
    )


class ErrorHook:
    """Installed as sys.excepthook while the studio runs; shows each uncaught error once."""

    def __init__(self, show: ShowError, project_root: Callable[[], Path | None] = lambda: None):
        self.show = show
        self.project_root = project_root
        self._showing = False  # an error raised while the box is up is only printed
        self._previous = sys.excepthook

    def install(self) -> None:
        sys.excepthook = self

    def uninstall(self) -> None:
        if sys.excepthook is self:
            sys.excepthook = self._previous

    def __call__(self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self._previous(kind, exc, tb)
            return
        traceback.print_exception(kind, exc, tb, file=sys.stderr)
        if self._showing:
            return
        self._showing = True
        try:
            self.show(*describe_uncaught(exc, self.project_root()))
        finally:
            self._showing = False
