"""The training worker as a separate process (QProcess), followed through its JSON-lines events.

Training never runs in the GUI process: `WorkerProcess.start` launches `main.py train ...
--events json`, reads stdout as it arrives (a line split across reads is kept until its end
comes; a line that is not an event is passed on as log text, never fatal), passes stderr on as
log text, and reports one `WorkerOutcome` when the process is gone, whatever way it went:
a finished/cancelled/failed event, a non-zero exit, a crash, or a failure to start.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from core.cli.train_cmds import train_argv
from core.threads import child_environment, studio_worker_threads
from core.training.events import END_EVENTS, Event
from core.training.settings import TrainSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
EXIT_INTERRUPTED = 130  # the train command's exit code after SIGINT/SIGTERM
STDERR_TAIL_LINES = 40

# One complete stdout line: a JSON event, or plain text (a library's print, a non-event line).
LineItem = tuple[Literal["event"], dict[str, Any]] | tuple[Literal["text"], str]


def worker_command(project_root: str | Path, settings: TrainSettings) -> tuple[str, list[str]]:
    """Program and arguments of the worker that trains `settings` on the project."""
    return sys.executable, [str(REPO_ROOT / "main.py"), *train_argv(str(project_root), settings, events="json")]


def resume_command(project_root: str | Path, run_id: int) -> tuple[str, list[str]]:
    """Program and arguments of the worker that continues run `run_id` from its checkpoint."""
    return sys.executable, [
        str(REPO_ROOT / "main.py"),
        "train",
        str(project_root),
        "--resume",
        str(run_id),
        "--events",
        "json",
    ]


class JsonLineBuffer:
    """Bytes in, complete lines out: each one an event dict or a line of plain text."""

    def __init__(self):
        self._partial = b""

    def feed(self, data: bytes | bytearray | memoryview) -> list[LineItem]:
        """("event", dict) or ("text", str) for every line completed by `data`."""
        lines = (self._partial + bytes(data)).split(b"\n")
        self._partial = lines.pop()  # the unfinished tail (b"" after a newline)
        return [item for line in lines if (item := parse_line(line)) is not None]

    def flush(self) -> list[LineItem]:
        """The last line when the stream ends without a newline."""
        rest, self._partial = self._partial, b""
        item = parse_line(rest)
        return [item] if item is not None else []


def parse_line(raw: bytes | str) -> LineItem | None:
    line = (raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw).strip()
    if not line:
        return None
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            return "event", record
    return "text", line


@dataclass(frozen=True)
class WorkerOutcome:
    status: str  # one of END_EVENTS: the run's last event, or what its exit says it would have been
    run_id: int | None
    error: str = ""
    exit_code: int | None = None


class WorkerProcess(QObject):
    # Hides QObject.event from Python callers only: Qt's C++ event() still dispatches (PySide overrides with functions).
    event = Signal(dict)  # type: ignore[assignment]  # one parsed JSON event
    log = Signal(str)  # stdout lines that are not events, and stderr text
    ended = Signal(object)  # WorkerOutcome
    _running: ClassVar[set[WorkerProcess]] = set()  # this studio's workers now running: they share the cores

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self._stdout = JsonLineBuffer()
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._end_event: dict | None = None
        self._run_id: int | None = None
        self._cancelling = False
        self.threads = 0  # compute threads given to the running worker (core/threads.py)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

    @property
    def running(self) -> bool:
        return self.process is not None

    @property
    def cancelling(self) -> bool:
        return self._cancelling

    @property
    def end_event(self) -> dict | None:
        """The last run's finished/cancelled/failed event, if it sent one."""
        return self._end_event

    def start(self, program: str, arguments: list[str], working_dir: str | Path = REPO_ROOT) -> None:
        if self.process is not None:
            raise RuntimeError("a worker is already running")
        self._stdout = JsonLineBuffer()
        self._stderr_tail.clear()
        self._end_event, self._run_id, self._cancelling = None, None, False
        process = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")  # events arrive as they are written
        # Its share of the cores: the GUI keeps one, workers running at once split the rest.
        WorkerProcess._running.add(self)
        self.threads = studio_worker_threads(len(WorkerProcess._running))
        for name, value in child_environment(self.threads, base={}).items():
            environment.insert(name, value)
        process.setProcessEnvironment(environment)
        process.setWorkingDirectory(str(working_dir))
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self.process = process
        self.log.emit("$ " + " ".join([Path(program).name, *arguments]))
        process.start(program, arguments)

    def cancel(self, kill_after_ms: int = 20_000) -> None:
        """SIGTERM: the worker saves a checkpoint and marks its run cancelled. If it has not
        exited after `kill_after_ms`, it is killed (the project reaps the run as failed)."""
        if self.process is None or self._cancelling:
            return
        self._cancelling = True
        self.log.emit("cancelling: asked the worker to stop (SIGTERM)")
        self.process.terminate()
        self._kill_timer.start(kill_after_ms)

    def wait(self, msecs: int) -> bool:
        """Block until the process has ended (for closing the window); True when it has."""
        return self.process is None or self.process.waitForFinished(msecs)

    def _kill(self) -> None:
        if self.process is not None:
            self.log.emit("the worker did not stop in time: killed")
            self.process.kill()

    # -- reading -----------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        if self.process is not None:
            self._dispatch(self._stdout.feed(self.process.readAllStandardOutput().data()))

    def _read_stderr(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardError().data()).decode("utf-8", errors="replace")
        lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
        self._stderr_tail.extend(lines)
        if lines:
            self.log.emit("\n".join(lines))

    def _dispatch(self, items: list[LineItem]) -> None:
        for item in items:
            if item[0] == "text":
                self.log.emit(item[1])
                continue
            value = item[1]
            if value.get("run") is not None:
                self._run_id = value["run"]
            if value["event"] in END_EVENTS:
                self._end_event = value
            self.event.emit(value)

    # -- ending ------------------------------------------------------------------------------
    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.process is not None:
            message = f"could not start the worker: {self.process.errorString()}"
            self._end(WorkerOutcome(Event.FAILED, None, message, None))

    def _finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        if self.process is None:
            return
        self._read_stdout()
        self._read_stderr()
        self._dispatch(self._stdout.flush())
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        self._end(self._outcome(None if crashed else exit_code, crashed))

    def _outcome(self, exit_code: int | None, crashed: bool) -> WorkerOutcome:
        end = self._end_event
        if end is not None:
            return WorkerOutcome(end["event"], self._run_id, str(end.get("error") or ""), exit_code)
        if self._cancelling and (crashed or exit_code == EXIT_INTERRUPTED):
            return WorkerOutcome(Event.CANCELLED, self._run_id, "", exit_code)
        tail = "\n".join(list(self._stderr_tail)[-12:])
        if crashed:
            reason = "the worker crashed"
        elif exit_code == 0:
            reason = "the worker exited without reporting how the run ended"
        else:
            reason = f"the worker exited with code {exit_code}"
        return WorkerOutcome(Event.FAILED, self._run_id, f"{reason}\n{tail}".strip(), exit_code)

    def _end(self, outcome: WorkerOutcome) -> None:
        WorkerProcess._running.discard(self)
        self._kill_timer.stop()
        process, self.process = self.process, None
        self._cancelling = False
        if process is not None:
            process.deleteLater()
        self.ended.emit(outcome)
