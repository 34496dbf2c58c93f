"""Running one long job (an import, building the demo) off the GUI thread.

`BackgroundJob(fn)` calls `fn(report_progress)` in a QThread; `report_progress(obj)` may be
called from the job at any rate and arrives in the GUI thread as the `progress` signal. The
result or the exception comes back as `succeeded` / `failed`, then `done` is emitted.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot


class _Worker(QObject):
    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)
    finished = Signal()

    def __init__(self, fn: Callable[[Callable[[Any], None]], Any]):
        super().__init__()
        self._fn = fn

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(self.progress.emit)
        except BaseException as exc:  # reported to the GUI, never lost in the thread
            exc.formatted_traceback = traceback.format_exc()
            self.failed.emit(exc)
        else:
            self.succeeded.emit(result)
        finally:
            self.finished.emit()


class BackgroundJob(QObject):
    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)  # the exception
    done = Signal()

    def __init__(self, fn: Callable[[Callable[[Any], None]], Any], parent: QObject | None = None):
        super().__init__(parent)
        self._thread = QThread()
        self._worker = _Worker(fn)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self.progress)
        self._worker.succeeded.connect(self.succeeded)
        self._worker.failed.connect(self.failed)
        self._worker.finished.connect(self._thread.quit)
        self._thread.finished.connect(self._finish)
        self.running = False

    def start(self) -> None:
        self.running = True
        self._thread.start()

    def wait(self, msecs: int = -1) -> bool:
        return self._thread.wait() if msecs < 0 else self._thread.wait(msecs)

    @Slot()
    def _finish(self) -> None:
        self.running = False
        self.done.emit()
