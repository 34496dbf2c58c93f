"""A work-around for the installed Qt binding, applied when `app` is first imported.

PySide6 6.12 returns None from void methods (QLabel.setText, every QPainter call,
processEvents, ...) without taking a reference to it. On Python 3.11, where None is still
reference-counted (it is immortal only from 3.12, PEP 683), each such call drops None's count
by one, and after some tens of thousands of calls (seconds of painting, or a long training run
followed live) the interpreter aborts: "Fatal Python error: none_dealloc: deallocating None".
Giving None a count no session can use up makes the leak harmless; nothing else changes.
"""

from __future__ import annotations

import ctypes
import sys

NONE_HEADROOM = 1 << 60  # decrements before None could reach zero: never, in practice


def keep_none_alive() -> None:
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return  # None is immortal there
    refcount = ctypes.c_ssize_t.from_address(id(None))  # ob_refcnt, the first field of every object
    if refcount.value < NONE_HEADROOM:
        refcount.value += NONE_HEADROOM
