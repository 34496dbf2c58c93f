"""The studio's warm worker: the `main.py serve PROJECT` process (core/training/server.py) kept
running while a project is open, so a refit starts with torch, the encoder, the cached features
and a compiled UMAP already in memory.

It stays a separate process: its crash never takes the studio down. `WarmWorker` starts it when
asked (`start(root)`: a project opened; `stop()`: closed or switched), reads its JSON events with
the same line parser as the one-shot training worker (app/worker_process.py), sends commands and
holds at most one request back while the process starts or is busy (a newer request replaces
it). A process that ends without being asked to is restarted, and the user is told once per
crash through `trouble`; after MAX_CRASHES within CRASH_WINDOW_S it gives up and says so.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from app.worker_process import REPO_ROOT, JsonLineBuffer
from core.threads import WARM_WORKER_NICENESS, child_environment, studio_worker_threads
from core.training.events import Event

MAX_CRASHES = 3  # within CRASH_WINDOW_S: then the studio stops restarting it
CRASH_WINDOW_S = 120.0
RESTART_DELAY_MS = 1000
STOP_TIMEOUT_MS = 10_000  # a worker asked to stop is killed after this
STDERR_TAIL_LINES = 12
JOB_COMMANDS = ("train", "refit", "features")  # commands that run as a job (answered by `idle`)

# The states, as `state` names them.
STOPPED, STARTING, READY, BUSY, GAVE_UP = "stopped", "starting", "ready", "busy", "gave up"


def serve_command(project_root: str | Path) -> tuple[str, list[str]]:
    """Program and arguments of the warm worker for the project (tests replace it)."""
    return sys.executable, [str(REPO_ROOT / "main.py"), "serve", str(project_root), "--nice", str(WARM_WORKER_NICENESS)]


def worker_threads() -> int:
    """The warm worker's compute threads: the cores less one for the GUI, as for one worker. It
    is idle but for refits, and app/live_refit.py holds refits while a training run or an import
    of the studio uses the cores, so the two never compete for long."""
    return studio_worker_threads(1)


class WarmWorker(QObject):
    # Hides QObject.event from Python callers only: Qt's C++ event() still dispatches (PySide overrides with functions).
    event = Signal(dict)  # type: ignore[assignment]  # every event the process writes
    job_started = Signal(dict)  # its `busy` event
    job_ended = Signal(
        dict
    )  # its `idle` event, or one made here: status refused / replaced / failed (the process died)
    state_changed = Signal(str)
    trouble = Signal(str, bool)  # a message for the user; True: it gave up
    log = Signal(str)

    def __init__(self, parent: QObject | None = None, threads: int | None = None):
        super().__init__(parent)
        self.threads = threads or worker_threads()
        self.root: Path | None = None
        self.state = STOPPED
        self.process: QProcess | None = None
        self.job: dict | None = None  # the job command sent and not yet ended (its "run" once started)
        self.pending: dict | None = None  # the one request waiting for the worker
        self._next_id = 1
        self._stdout = JsonLineBuffer()
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._crashes: deque[float] = deque()
        self._retiring: set[QProcess] = set()  # processes asked to stop, not yet gone
        self._restart_timer = QTimer(self)
        self._restart_timer.setSingleShot(True)
        self._restart_timer.timeout.connect(self._launch)

    # -- the process ---------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """A process runs or is coming up (not stopped, not given up)."""
        return self.state in (STARTING, READY, BUSY)

    def start(self, root: str | Path) -> None:
        """Run the worker on the project at `root` (stopping one on another project)."""
        root = Path(root)
        if self.root == root and self.available:
            return
        self.stop()
        self.root = root
        self._crashes.clear()
        self._launch()

    def stop(self) -> None:
        """Stop the worker (a project closed or switched): it is asked to shut down and left to
        go in the background, killed if it lingers. A request still waiting is dropped."""
        self._restart_timer.stop()
        if self.process is not None:
            self._retire(self.process)
            self.process = None
        self._drop_job("the worker was stopped")
        self.root = None
        self._set_state(STOPPED)

    def shutdown(self, timeout_ms: int = STOP_TIMEOUT_MS) -> None:
        """Closing the studio: stop the worker and wait for it (killed past the timeout)."""
        self.stop()
        for process in list(self._retiring):
            if not process.waitForFinished(timeout_ms):
                process.kill()
                process.waitForFinished(5_000)

    def _launch(self) -> None:
        if self.root is None:
            return
        self._stdout = JsonLineBuffer()
        self._stderr_tail.clear()
        process = QProcess(self)
        environment = QProcessEnvironment()
        for name, value in child_environment(self.threads).items():
            environment.insert(name, value)
        environment.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(environment)
        process.setWorkingDirectory(str(REPO_ROOT))
        process.readyReadStandardOutput.connect(lambda p=process: self._read_stdout(p))
        process.readyReadStandardError.connect(lambda p=process: self._read_stderr(p))
        process.finished.connect(lambda code, status, p=process: self._finished(p, code, status))
        process.errorOccurred.connect(lambda error, p=process: self._error(p, error))
        self.process = process
        self._set_state(STARTING)
        program, arguments = serve_command(self.root)
        self.log.emit("$ " + " ".join([Path(program).name, *arguments]))
        process.start(program, arguments)

    def _retire(self, process: QProcess) -> None:
        """Ask a process to shut down; it is forgotten once it has gone."""
        self._retiring.add(process)
        if process.state() != QProcess.ProcessState.NotRunning:
            process.write(b'{"command": "shutdown"}\n')
            process.closeWriteChannel()
            QTimer.singleShot(STOP_TIMEOUT_MS, process.kill)
        else:
            self._forget(process)

    def _forget(self, process: QProcess) -> None:
        self._retiring.discard(process)
        process.deleteLater()

    # -- requests ------------------------------------------------------------------------------
    def request(self, command: str, **fields) -> int | None:
        """Send a command (a job runs when the worker is free; until then it waits as the one
        pending request, replacing an older one). Its id, or None when no worker runs."""
        if not self.available:
            return None
        message = {"id": self._next_id, "command": command, **fields}
        self._next_id += 1
        if command not in JOB_COMMANDS:
            self._write(message)
        elif self.state == READY and self.job is None:
            self._send_job(message)
        else:
            if self.pending is not None:
                self.job_ended.emit(self._ending(self.pending, "replaced", "a newer request replaced it"))
            self.pending = message
        return message["id"]

    def cancel(self) -> None:
        """Stop the running job at its next step; a pending request is dropped."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self.job_ended.emit(self._ending(pending, "cancelled", "cancelled before it started"))
        if self.job is not None:
            self._write({"command": "cancel", "job": self.job["id"]})

    def _send_job(self, message: dict) -> None:
        self.job = dict(message)
        self._write(message)

    def _send_pending(self) -> None:
        if self.pending is not None and self.state == READY and self.job is None:
            message, self.pending = self.pending, None
            self._send_job(message)

    def _write(self, message: dict) -> None:
        if self.process is not None:
            self.process.write((json.dumps(message) + "\n").encode())

    @staticmethod
    def _ending(message: dict, status: str, error: str = "", run: int | None = None) -> dict:
        return {
            "event": Event.IDLE,  # as the server would have said it
            "id": message["id"],
            "command": message["command"],
            "status": status,
            "run": run,
            "error": error,
        }

    def _drop_job(self, reason: str) -> None:
        for message in (self.job, self.pending):
            if message is not None:
                self.job_ended.emit(self._ending(message, "failed", reason, message.get("run")))
        self.job = self.pending = None

    # -- events --------------------------------------------------------------------------------
    def _read_stdout(self, process: QProcess) -> None:
        if process is not self.process:
            return
        for item in self._stdout.feed(process.readAllStandardOutput().data()):
            if item[0] == "text":  # the server writes only events; anything else is worth a log line
                self.log.emit(item[1])
            else:
                self._handle(item[1])

    def _read_stderr(self, process: QProcess) -> None:
        text = bytes(process.readAllStandardError().data()).decode("utf-8", errors="replace")
        if process is not self.process:
            return
        lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
        self._stderr_tail.extend(lines)
        if lines:
            self.log.emit("\n".join(lines))

    def _handle(self, event: dict) -> None:
        name = event["event"]
        # The running job when this event is about it, else None.
        job = self.job if self.job is not None and event.get("id") == self.job["id"] else None
        if name == Event.READY:
            self._set_state(READY)
        elif name == Event.BUSY and job is not None:
            self._set_state(BUSY)
            self.job_started.emit(event)
        elif name == Event.STARTED and job is not None:
            job["run"] = event.get("run")
        elif name in (Event.IDLE, Event.ERROR) and job is not None:
            self.job = None
            self._set_state(READY)
            self.job_ended.emit(event if name == Event.IDLE else self._ending(job, "refused", str(event.get("error"))))
        self.event.emit(event)
        self._send_pending()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    # -- endings -------------------------------------------------------------------------------
    def _error(self, process: QProcess, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._ended(process, f"could not start: {process.errorString()}")

    def _finished(self, process: QProcess, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        if process is self.process:
            self._read_stdout(process)
            self._read_stderr(process)
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        self._ended(process, "it crashed" if crashed else f"it exited with code {exit_code}")

    def _ended(self, process: QProcess, how: str) -> None:
        if process in self._retiring or process is not self.process:
            self._forget(process)
            return
        self.process = None
        process.deleteLater()
        self._drop_job(f"the worker process stopped ({how})")
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > CRASH_WINDOW_S:
            self._crashes.popleft()
        tail = "\n".join(list(self._stderr_tail)[-6:])
        detail = f"\n\nIts last words:\n{tail}" if tail else ""
        if len(self._crashes) >= MAX_CRASHES:
            self._set_state(GAVE_UP)
            self.trouble.emit(
                f"The model worker stopped {len(self._crashes)} times within "
                f"{CRASH_WINDOW_S:.0f} s ({how}), so the studio stopped restarting it: live "
                f"refits are off until the project is opened again. Labeling and the "
                f"Training panel work as before.{detail}",
                True,
            )
            return
        self._set_state(STARTING)
        self.trouble.emit(f"The model worker stopped ({how}); restarting it.", False)
        self._restart_timer.start(RESTART_DELAY_MS)
