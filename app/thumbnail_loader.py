"""Face thumbnails for views: made and decoded in a QThreadPool, kept in an LRU of QPixmaps.

`pixmap(face)` answers at once: the cached pixmap, or None after queueing a load. When a load
ends, `loaded(face_id)` or `failed(face_id, message)` is emitted in the GUI thread. The newest
requests run first and the oldest queued ones are dropped past a limit, so scrolling quickly
through 30,000 faces only ever loads what was recently on screen.
"""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from core.ingest.imageio import ImageProblem
from core.store.project import Project
from core.store.queries import FaceRow
from core.threads import thumbnail_threads
from core.thumbnails import DEFAULT_THUMB_SIZE, ensure_thumbnail

CACHE_SIZE = 1500  # pixmaps; 96x96 RGB32 is about 36 KB each
MAX_QUEUED = 300  # loads waiting for a thread; older ones are dropped (re-requested if still shown)


class _Relay(QObject):
    """Lives in the GUI thread; worker threads emit through it (queued connection)."""

    done = Signal(object)  # the finished _LoadTask


class _LoadTask(QRunnable):
    def __init__(self, relay: _Relay, generation: int, project: Project, face: FaceRow, size: int):
        super().__init__()
        # Python owns the task: ThumbnailLoader keeps it alive until its `done` arrives.
        self.setAutoDelete(False)
        self.relay, self.generation, self.project, self.face, self.size = (relay, generation, project, face, size)
        self.started = False
        self.image: QImage | None = None
        self.error = ""

    def run(self) -> None:
        self.started = True
        try:
            path = ensure_thumbnail(self.project, self.face, self.size)
            image = QImage(str(path))
            if image.isNull():
                self.error = f"cannot read the thumbnail file {path}"
            else:
                self.image = image
        except ImageProblem as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a thumbnail must never take the studio down
            self.error = f"{type(exc).__name__}: {exc}"
        self.relay.done.emit(self)


class ThumbnailLoader(QObject):
    loaded = Signal(int)  # face id
    failed = Signal(int, str)  # face id, message

    def __init__(self, size: int = DEFAULT_THUMB_SIZE, threads: int | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.size = size
        self.pool = QThreadPool(self)
        # Never more than the studio's share (core/threads.py): the worker has the other cores.
        limit = thumbnail_threads()
        self.pool.setMaxThreadCount(limit if threads is None else max(1, min(threads, limit)))
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._project: Project | None = None
        self._generation = 0
        self._priority = 0
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._errors: dict[int, str] = {}
        self._pending: OrderedDict[int, _LoadTask] = OrderedDict()  # queued or running, oldest first
        self._alive: set[_LoadTask] = set()  # handed to the pool and not taken back

    def set_project(self, project: Project | None) -> None:
        """Forget everything: cached pixmaps, errors and queued loads belong to the old project."""
        self._generation += 1
        for task in self._pending.values():
            if self.pool.tryTake(task):
                self._alive.discard(task)
        self._pending.clear()
        self._cache.clear()
        self._errors.clear()
        self._project = project

    def error(self, face_id: int) -> str | None:
        return self._errors.get(face_id)

    def cached(self, face_id: int) -> QPixmap | None:
        return self._cache.get(face_id)

    def forget(self, face_id: int) -> None:
        """Drop one face's pixmap or error, so the next request loads it again."""
        self._cache.pop(face_id, None)
        self._errors.pop(face_id, None)

    def pixmap(self, face: FaceRow) -> QPixmap | None:
        """The thumbnail if cached (marked most recently used); else None and a load is queued."""
        pixmap = self._cache.get(face.id)
        if pixmap is not None:
            self._cache.move_to_end(face.id)
            return pixmap
        if face.id not in self._errors:
            self._request(face)
        return None

    def _request(self, face: FaceRow) -> None:
        if self._project is None:
            return
        self._priority = min(self._priority + 1, 2**31 - 1)  # newest first: on screen now wins
        task = self._pending.get(face.id)
        if task is not None:
            if task.started or not self.pool.tryTake(task):
                return  # running: its result is on the way
            self._alive.discard(task)
            del self._pending[face.id]
        task = _LoadTask(self._relay, self._generation, self._project, face, self.size)
        self._pending[face.id] = task
        self._alive.add(task)
        self.pool.start(task, self._priority)
        if len(self._pending) > MAX_QUEUED + 2 * self.pool.maxThreadCount():
            self._trim()

    def _trim(self) -> None:
        waiting = [face_id for face_id, task in self._pending.items() if not task.started]
        for face_id in waiting[: max(0, len(waiting) - MAX_QUEUED // 2)]:
            task = self._pending[face_id]
            if self.pool.tryTake(task):
                del self._pending[face_id]
                self._alive.discard(task)

    @Slot(object)
    def _on_done(self, task: _LoadTask) -> None:
        self._alive.discard(task)
        if task.generation != self._generation:
            return
        face_id = task.face.id
        if self._pending.get(face_id) is task:
            del self._pending[face_id]
        if task.image is None:
            self._errors[face_id] = task.error or "unknown error"
            self.failed.emit(face_id, self._errors[face_id])
            return
        self._cache[face_id] = QPixmap.fromImage(task.image)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        self.loaded.emit(face_id)

    def pending_count(self) -> int:
        return len(self._pending)

    def shutdown(self) -> None:
        self.set_project(None)
        self.pool.clear()
        self.pool.waitForDone()
