"""Running one long job (an import, building the demo) off the GUI thread.

`BackgroundJob(fn)` calls `fn(report_progress)` in a QThread; `report_progress(obj)` may be
called from the job at any rate and arrives in the GUI thread as the `progress` signal. The
result or the exception comes back as `succeeded` / `failed`, then `done` is emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot


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
        except BaseException as exc:  # noqa: BLE001 - reported to the GUI, never lost in the thread
            self.failed.emit(exc)  # its __traceback__ comes with it
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
        # Direct: quit() is thread-safe, and a queued call would never arrive while the GUI
        # thread blocks in wait() (closing the window mid-job would hang).
        self._worker.finished.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
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


class NewestJobRunner(QObject):
    """One background job at a time for a view that only wants its newest request answered.

    `request(fn, tag)` starts `fn(report_progress)` at once when idle; while a job runs, it is
    kept as the single pending request (replacing an older pending one) and started when the
    running job ends. `succeeded(tag, result)` and `failed(tag, exception)` arrive only for a job
    that no newer request overtook: a stale answer is never shown. `progress(tag, obj)` relays
    the running job's reports.
    """

    progress = Signal(object, object)  # tag, what the job reported
    succeeded = Signal(object, object)  # tag, result
    failed = Signal(object, object)  # tag, exception

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.job: BackgroundJob | None = None
        self._tag = None
        self._pending: tuple[Callable, Any] | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def request(self, fn: Callable[[Callable[[Any], None]], Any], tag: Any = None) -> None:
        if self.job is not None:
            self._pending = (fn, tag)
            return
        self._tag = tag
        self.job = BackgroundJob(fn, self)
        self.job.progress.connect(lambda obj, t=tag: self.progress.emit(t, obj))
        self.job.succeeded.connect(self._succeeded)
        self.job.failed.connect(self._failed)
        self.job.done.connect(self._done)
        self.job.start()

    def cancel_pending(self) -> None:
        self._pending = None

    def wait(self) -> None:
        """Block until the running job ends (at shutdown); the pending request is dropped."""
        self._pending = None
        if self.job is not None:
            self.job.wait()

    def _succeeded(self, result) -> None:
        if self._pending is None:
            self.succeeded.emit(self._tag, result)

    def _failed(self, exc) -> None:
        if self._pending is None:
            self.failed.emit(self._tag, exc)

    def _done(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.deleteLater()
        if self._pending is not None:
            fn, tag = self._pending
            self._pending = None
            self.request(fn, tag)
