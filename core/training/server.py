"""The warm worker: one long-lived process per open project, driven by JSON commands on stdin
and answering with the training worker's JSON events on stdout (`main.py serve PROJECT`).

Why it exists: a fresh `main.py train` or `refit` pays torch's import, the encoder's load,
reading the feature cache and numba compiling UMAP (about 12 of the 14 s UMAP costs for 910
faces) before it does any work. This process pays them once and keeps them: torch is imported
before `ready`; then, first in its job thread, a warm-up loads what a refit of the newest
finished run reads (the encoder, class texts, the feature cache) into one `RefitMemory` that
lives across refits (a command sent meanwhile waits only for this); UMAP is compiled by a tiny
fit in a background thread once the worker has been idle for UMAP_IDLE_S. A head-mode `train`
job keeps its encoder loaded for the next. It stays a separate process, so a crash never takes
the studio down (app/warm_worker.py restarts it).

Commands, one JSON object per line:
  {"id": 7, "command": "train", "settings": {...TrainSettings.to_dict()...}}
  {"id": 8, "command": "refit", "run": 12, "steps": 60}   run: the parent run; steps optional;
                                     "soft_labels": true/false optional (default: the parent's)
  {"id": 10, "command": "features", "encoder": "offline", "strong_views": 2, "engine": "auto"}
                                     fill the feature cache (each field optional, as `features`)
  {"id": 9, "command": "ping"}                             answered with `pong` at once
  {"command": "cancel", "job": 7}    stop the running job (only job 7, if given) at its next step
  {"command": "shutdown"}            cancel the job, wait for it, exit 0 (the end of stdin too)
Events, one JSON object per line: the worker's own (started, progress, metrics, info, map,
finished, cancelled, failed ...) carrying the command's `id`, and the server's: `ready`, `busy`
and `idle` (a job began / ended: its status and run), `pong`, `warm` (part refit: the memory
is loaded; part umap: compiled), `error` (a bad command, named; the server carries on) and
`exiting`. One job runs at a time, in one thread that does all torch work; a job command while
another runs is refused with `error`.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from core.store.models import RUN_FAILED
from core.store.project import Project
from core.training.events import Event, EventSink, JsonEvents

PROTOCOL = 1
SHOWN_INPUT_CHARS = 200  # a bad line is quoted in its error event up to this length
JOB_STOP_TIMEOUT_S = 60.0  # shutdown waits this long for a cancelled job to save and stop
WARM_UPS = ("refit", "umap")  # what a server loads or compiles at start-up, in this order
UMAP_IDLE_S = 20.0  # UMAP compiles once no job has run for this long


class BadCommand(ValueError):
    """A command the server cannot run; the message names what is wrong."""


class SharedEvents(JsonEvents):
    """JSON lines from the reading thread, the job thread and the warm-up thread: one lock, so
    lines never interleave."""

    def __init__(self, stream: IO[str]):
        super().__init__(stream)
        self._lock = threading.Lock()

    def emit(self, event: Event, **fields: Any) -> None:
        with self._lock:
            super().emit(event, **fields)


class JobEvents(EventSink):
    """A job's events, each tagged with the id of the command that started it."""

    def __init__(self, out: EventSink, request_id: Any):
        self.out = out
        self.request_id = request_id

    def emit(self, event: Event, **fields: Any) -> None:
        self.out.emit(event, id=self.request_id, **fields)


@dataclass
class Job:
    request_id: Any
    command: str
    run: Callable[[Callable[[], bool]], dict]  # should_stop -> idle fields (status, run ...)
    head_mode: bool = True  # may borrow the kept encoder (a fine-tune run changes its weights)
    announce: bool = True  # `idle` when it ends (the server's own warm-up job ends silently)
    stop: threading.Event = field(default_factory=threading.Event)


class EncoderShelf:
    """Encoders kept loaded between jobs, keyed by (spec, device).

    The training code gets its encoder from `core.encoders.get_encoder` at call time; while a
    head-mode job runs, the shelf answers instead and keeps what it loaded. Head mode only reads
    an encoder; a fine-tune job trains its weights, so it always gets a fresh one."""

    def __init__(self) -> None:
        self.kept: dict[tuple[str, str], Any] = {}
        self.lending = False
        self._load: Callable | None = None

    def install(self) -> None:
        import core.encoders as encoders

        if self._load is None:
            self._load = encoders.get_encoder
            encoders.get_encoder = self.get

    def get(self, spec: str | None = None, device=None):
        if self._load is None:
            raise RuntimeError("the encoder shelf answers for get_encoder only once installed (EncoderShelf.install)")
        if not self.lending:
            return self._load(spec, device)
        from core.encoders.base import resolve_device

        key = (str(spec), str(resolve_device(device)))  # None and "cpu" are one encoder on a CPU
        if key not in self.kept:
            self.kept[key] = self._load(spec, device)
        return self.kept[key]

    @contextmanager
    def lent(self, enabled: bool):
        self.lending = enabled
        try:
            yield
        finally:
            self.lending = False

    def names(self) -> list[str]:
        return [f"{spec}@{device}" for spec, device in self.kept]


class WarmWorker:
    """Reads commands, runs one job at a time in its job thread, keeps the warm state."""

    def __init__(self, project: Project, out: IO[str], *, warm_up: tuple[str, ...] = WARM_UPS):
        self.project = project
        self.events = SharedEvents(out)
        self.warm_ups = warm_up
        self.encoders = EncoderShelf()
        self.refit_memory = None  # core.training.refit.RefitMemory, made by the first refit
        self.umap_ready = False
        self.job: Job | None = None  # the command's job accepted last and not yet ended
        self._running: Job | None = None  # the job in the job thread (the warm-up included)
        self._last_busy = time.monotonic()  # when a job last started or ended
        self._closing = threading.Event()
        self._job_lock = threading.Lock()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._input: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._job_thread = threading.Thread(target=self._job_loop, name="job", daemon=True)

    # -- start and stop ------------------------------------------------------------------------
    def start(self, threads: str = "") -> None:
        import torch  # noqa: F401  (imported now: the first job should not wait for it)

        self.encoders.install()
        self._job_thread.start()
        self.events.emit(
            Event.READY, protocol=PROTOCOL, project=str(self.project.root), threads=threads, commands=sorted(COMMANDS)
        )
        if self.warm_ups:
            # First in the job thread (a command sent meanwhile runs right after it), so the
            # first refit costs what later ones do; UMAP compiles once that is done.
            self._jobs.put(Job(None, "warm-up", self._warm_up, announce=False))

    def _warm_up(self, should_stop) -> dict:
        if "refit" in self.warm_ups:
            started = time.perf_counter()
            try:
                run = self._memory().prime(self.project, should_stop=should_stop)
            except Exception as exc:  # noqa: BLE001 - the first refit loads what it needs itself; nothing is lost
                traceback.print_exc(file=sys.stderr)
                self.events.emit(Event.WARM, part="refit", ok=False, error=f"{type(exc).__name__}: {exc}")
            else:
                self.events.emit(
                    Event.WARM, part="refit", ok=True, run=run, seconds=round(time.perf_counter() - started, 2)
                )
        if "umap" in self.warm_ups:
            threading.Thread(target=self._compile_umap_when_idle, name="umap-warm-up", daemon=True).start()
        return {}

    def _memory(self):
        from core.training.refit import RefitMemory

        if self.refit_memory is None:
            self.refit_memory = RefitMemory()
        return self.refit_memory

    def _compile_umap_when_idle(self, idle_s: float = UMAP_IDLE_S) -> None:
        """A tiny UMAP fit compiles numba's functions once for this process (the map of every
        later `train` then costs its own work, not the compiling). Compiling holds Python's lock
        for seconds at a time: a refit beside it took twice as long (8.4 against 3.5 CPU s for 40
        steps), so it waits until no job has run for `idle_s`. (A refit places its map in its
        parent's layout and needs no UMAP.)"""
        while not self._closing.wait(0.5):
            if self._running is None and self.job is None and time.monotonic() - self._last_busy >= idle_s:
                break
        else:
            return
        self._compile_umap()

    def _compile_umap(self) -> None:
        from core.projection import compile_umap

        started = time.perf_counter()
        try:
            compile_umap()
        except Exception as exc:  # noqa: BLE001 - a map falls back to compiling when it runs; nothing is lost
            self.events.emit(Event.WARM, part="umap", ok=False, error=f"{type(exc).__name__}: {exc}")
            return
        self.umap_ready = True
        self.events.emit(Event.WARM, part="umap", ok=True, seconds=round(time.perf_counter() - started, 2))

    def serve(self, stream: IO[str]) -> None:
        """Handle commands from `stream` until `shutdown`, the end of input (the studio went
        away) or `stop_serving`. A thread reads the input, so that a signal only has to queue
        the stop (nothing is interrupted half-way)."""
        threading.Thread(target=self._read_input, args=(stream,), name="input", daemon=True).start()
        try:
            while (line := self._input.get()) is not None:
                if not self.handle_line(line):
                    return
        finally:
            self.shutdown()

    def stop_serving(self) -> None:
        """Stop after the command being handled; safe in a signal handler (SimpleQueue.put is
        reentrant)."""
        self._input.put(None)

    def _read_input(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            self._input.put(line)
        self._input.put(None)

    def shutdown(self, timeout_s: float = JOB_STOP_TIMEOUT_S) -> None:
        """Cancel the running job, let it save and stop, then say goodbye. Idempotent."""
        self._closing.set()
        if not self._job_thread.is_alive():
            return
        job = self.job
        for running in (job, self._running):
            if running is not None:
                running.stop.set()
        self._jobs.put(None)
        self._job_thread.join(timeout_s)
        self.events.emit(
            Event.EXITING,
            stopped_job=job.request_id if job is not None else None,
            clean=not self._job_thread.is_alive(),
        )

    # -- commands ------------------------------------------------------------------------------
    def handle_line(self, line: str) -> bool:
        """One line of input; False when the server should stop. Never raises for bad input."""
        if not line.strip():
            return True
        request: dict = {}
        try:
            request = parse_request(line)
            return COMMANDS[check_command(request)](self, request)
        except BadCommand as exc:
            self.events.emit(Event.ERROR, id=request.get("id"), error=str(exc))
            return True

    def begin(self, job: Job) -> None:
        with self._job_lock:
            if self.job is not None:
                raise BadCommand(
                    f"{job.command!r} refused: job {self.job.request_id} ({self.job.command}) is "
                    f"still running; cancel it or wait for its idle event"
                )
            self.job = job
        self.events.emit(Event.BUSY, id=job.request_id, command=job.command)
        self._jobs.put(job)

    def _job_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._running, self._last_busy = job, time.monotonic()
            started = time.perf_counter()
            try:
                with self.encoders.lent(job.head_mode):
                    ending = job.run(job.stop.is_set)
            except Exception as exc:  # noqa: BLE001 - a failing job never ends the server
                traceback.print_exc(file=sys.stderr)
                error = f"{type(exc).__name__}: {exc}"
                self.events.emit(Event.FAILED, id=job.request_id, error=error)
                ending = {"status": RUN_FAILED, "error": error}
            self._running, self._last_busy = None, time.monotonic()
            if not job.announce:
                continue
            with self._job_lock:
                self.job = None  # before `idle`: the next command may follow it at once
            self.events.emit(
                Event.IDLE,
                id=job.request_id,
                command=job.command,
                seconds=round(time.perf_counter() - started, 3),
                **ending,
            )


def parse_request(line: str) -> dict:
    try:
        request = json.loads(line)
    except ValueError:
        raise BadCommand(f"not JSON: {_shown(line)}") from None
    if not isinstance(request, dict):
        raise BadCommand(f"a command is a JSON object, not {_shown(line)}")
    return request


def check_command(request: dict) -> str:
    command = request.get("command")
    if not isinstance(command, str) or command not in COMMANDS:
        raise BadCommand(
            f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}"
            if command is not None
            else f'no "command" in {_shown(json.dumps(request))}'
        )
    return command


def _shown(line: str) -> str:
    line = line.strip()
    return repr(line if len(line) <= SHOWN_INPUT_CHARS else line[:SHOWN_INPUT_CHARS] + "…")


def _outcome_fields(outcome) -> dict:
    return {"status": outcome.status, "run": outcome.run_id}


# -- the commands -------------------------------------------------------------------------------
def _ping(server: WarmWorker, request: dict) -> bool:
    job = server.job
    server.events.emit(
        Event.PONG,
        id=request.get("id"),
        busy=job.request_id if job is not None else None,
        umap_ready=server.umap_ready,
        encoders=server.encoders.names(),
        refit_memory=server.refit_memory is not None,
    )
    return True


def _cancel(server: WarmWorker, request: dict) -> bool:
    job, target = server.job, request.get("job")
    if job is None or (target is not None and target != job.request_id):
        server.events.emit(
            Event.INFO,
            id=request.get("id"),
            message="nothing to cancel" + (f": job {target} is not running" if target is not None else ""),
        )
        return True
    job.stop.set()
    server.events.emit(Event.INFO, id=job.request_id, message=f"cancelling job {job.request_id} ({job.command})")
    return True


def _shutdown(server: WarmWorker, request: dict) -> bool:
    return False


def _train(server: WarmWorker, request: dict) -> bool:
    from core.training.settings import TrainSettings

    raw = request.get("settings", {})
    if not isinstance(raw, dict):
        raise BadCommand(f'train: "settings" must be an object (TrainSettings.to_dict()), not {raw!r}')
    try:
        # A request that leaves geometry out gets today's default (from_dict reads a missing key
        # as "off": that is how runs recorded before it trained).
        settings = TrainSettings.from_dict({"geometry": TrainSettings.geometry, **raw})
        settings.validate()
    except (TypeError, ValueError) as exc:
        raise BadCommand(f"train: bad settings: {exc}") from None
    events = JobEvents(server.events, request.get("id"))

    def run(should_stop) -> dict:
        from core.training.worker import RunError, train

        try:
            return _outcome_fields(train(server.project, settings, events, should_stop=should_stop))
        except RunError as exc:  # refused before a run existed
            events.emit(Event.FAILED, error=str(exc))
            return {"status": RUN_FAILED, "run": None, "error": str(exc)}

    server.begin(Job(request.get("id"), "train", run, head_mode=settings.mode == "head"))
    return True


def _refit(server: WarmWorker, request: dict) -> bool:
    parent, steps = request.get("run"), request.get("steps")
    if parent is not None and (not isinstance(parent, int) or isinstance(parent, bool) or parent < 1):
        raise BadCommand(f'refit: "run" must be a run id (a whole number from 1) or null, not {parent!r}')
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise BadCommand(f'refit: "steps" must be a whole number from 1, not {steps!r}')
    soft_labels = request.get("soft_labels")
    if soft_labels is not None and not isinstance(soft_labels, bool):
        raise BadCommand(f'refit: "soft_labels" must be true, false or null (the parent run\'s), not {soft_labels!r}')
    try:
        from core.training import refit as refit_module
    except ImportError as exc:
        raise BadCommand(f"refit is not available in this version ({exc})") from None
    events = JobEvents(server.events, request.get("id"))

    def run(should_stop) -> dict:
        from core.training.worker import RunError

        try:
            return _outcome_fields(
                refit_module.refit(
                    server.project,
                    parent,
                    events,
                    memory=server._memory(),
                    should_stop=should_stop,
                    steps=steps,
                    soft_labels=soft_labels,
                )
            )
        except RunError as exc:  # refused before a run existed (no such run, not finished ...)
            events.emit(Event.FAILED, error=str(exc))
            return {"status": RUN_FAILED, "run": None, "error": str(exc)}

    server.begin(Job(request.get("id"), "refit", run))
    return True


FEATURE_ENGINES = ("auto", "onnx", "torch")


def _features(server: WarmWorker, request: dict) -> bool:
    from core.encoders import DEFAULT_ENCODER, EncoderError, check_spec
    from core.ssl.config import SettingError
    from core.training.settings import SETTINGS_RANGES, TrainSettings

    encoder = request.get("encoder", DEFAULT_ENCODER)
    strong_views = request.get("strong_views", TrainSettings.strong_views)
    engine = request.get("engine", "auto")
    try:
        check_spec(encoder)
        SETTINGS_RANGES["strong_views"].check("strong_views", strong_views)
    except (EncoderError, SettingError) as exc:
        raise BadCommand(f"features: {exc}") from None
    if engine not in FEATURE_ENGINES:
        raise BadCommand(f'features: "engine" must be one of {", ".join(FEATURE_ENGINES)}, not {engine!r}')
    events = JobEvents(server.events, request.get("id"))

    def run(should_stop) -> dict:
        from core.training.features import fill_cache

        try:
            outcome = fill_cache(
                server.project, encoder, events, should_stop=should_stop, strong_views=strong_views, engine=engine
            )
        except EncoderError as exc:
            events.emit(Event.FAILED, error=str(exc))
            return {"status": RUN_FAILED, "error": str(exc)}
        return {"status": outcome.status, "faces": outcome.faces, "computed": outcome.computed}

    server.begin(Job(request.get("id"), "features", run))
    return True


COMMANDS: dict[str, Callable[[WarmWorker, dict], bool]] = {
    "ping": _ping,
    "cancel": _cancel,
    "shutdown": _shutdown,
    "train": _train,
    "refit": _refit,
    "features": _features,
}
