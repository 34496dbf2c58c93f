"""The worker's event stream: one JSON object per line on stdout, for the studio to follow.

Every event has "event" and "time"; most have a "message" in words. In the order a run sends them:
- phase: the run moved on to one of PHASES (the same names for `train` and `refit`), with
  `message` and, where it can be told before the phase starts, `eta_s` (the map's, from the face
  count). "starting" comes first, before the run exists; "encoder" loads the image and text
  encoders; "features" fills or reads the head-mode feature cache; "training" runs the steps;
  "predictions" predicts every face and writes the results; "map" computes the 2-D maps.
- started (run, algorithm, encoder, mode, steps): the run exists;
- warning: a setting that makes part of the run useless, e.g. a ticked level that cannot
  appear (TrainSettings.level_warnings);
- progress (phase, step, total, eta_s): n of N within a phase: "features" (faces), "training"
  (steps), "predictions" (faces written); eta_s is null until a rate is known;
- metrics (step, values), info (message), map (run, method, final: a 2-D map is written);
- finished (run, metrics), cancelled (run, step), failed (run, error): the end.
Without --events json the same events drive a readable progress bar.

The names are `Event`'s, the one list every sender (worker, refit, feature job, the warm worker of
core/training/server.py) and reader (app/) uses; the warm worker adds its own (SERVER_EVENTS).
"""

from __future__ import annotations

import json
import math
import sys
import time
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm

PHASES = ("starting", "encoder", "features", "training", "predictions", "map")


class Event(StrEnum):
    """The name of an event (its "event" field); a str, so it is written and compared as one."""

    PHASE = "phase"
    STARTED = "started"
    WARNING = "warning"
    PROGRESS = "progress"
    METRICS = "metrics"
    INFO = "info"
    MAP = "map"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"
    # The warm worker's own (core/training/server.py), around the jobs' events above.
    READY = "ready"
    WARM = "warm"
    BUSY = "busy"
    IDLE = "idle"
    PONG = "pong"
    ERROR = "error"
    EXITING = "exiting"


END_EVENTS = (Event.FINISHED, Event.CANCELLED, Event.FAILED)  # a run's last event: one of these
SERVER_EVENTS = frozenset({Event.READY, Event.WARM, Event.BUSY, Event.IDLE, Event.PONG, Event.ERROR, Event.EXITING})
RUN_EVENTS = frozenset(Event) - SERVER_EVENTS  # what a train, refit or feature run sends


class EtaClock:
    """Seconds left in a phase from its rate so far: started at the phase's first unit of work."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.first_done = 0

    def eta_s(self, done: int, total: int) -> float | None:
        now = time.perf_counter()
        if self.started is None:
            self.started, self.first_done = now, done
            return None
        if done <= self.first_done:
            return None
        rate = (now - self.started) / (done - self.first_done)
        return round(rate * max(total - done, 0), 1)


class EventSink:
    def emit(self, event: Event, **fields: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NullEvents(EventSink):
    """For the ranks of a distributed run other than the first: one voice is enough."""

    def emit(self, event: Event, **fields: Any) -> None:
        pass


class JsonEvents(EventSink):
    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def emit(self, event: Event, **fields: Any) -> None:
        record = {"event": str(event), "time": round(time.time(), 3), **fields}
        self.stream.write(json.dumps(record, default=_jsonable, allow_nan=False) + "\n")
        self.stream.flush()


def _jsonable(value: Any):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def clean_number(value: float) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return None if value is None or not math.isfinite(value) else value


class ConsoleEvents(EventSink):
    """A progress bar on stderr and short lines for the rest."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar: tqdm | None = None  # tqdm is imported with the first bar: the studio reads Event alone
        self.phase = ""

    def emit(self, event: Event, **fields: Any) -> None:
        if event == Event.PROGRESS:
            if self.quiet:
                return
            phase = fields.get("phase", "training")
            if self.bar is None or self.phase != phase:
                self.close()
                self.phase = phase
                from tqdm import tqdm

                self.bar = tqdm(
                    total=fields["total"], desc=phase, file=sys.stderr, disable=None, leave=False, dynamic_ncols=True
                )
            self.bar.n = fields["step"]
            self.bar.refresh()
        elif event == Event.METRICS:
            values = fields.get("values", {})
            shown = ", ".join(
                f"{k} {v:.3f}"
                for k, v in values.items()
                if isinstance(v, (int, float)) and ("acc" in k or k.startswith("loss"))
            )
            if shown and not self.quiet:
                self._write(f"step {fields.get('step')}: {shown}")
        elif event == Event.PHASE and not self.quiet:
            self.close()
            eta = fields.get("eta_s")
            self._write(
                f"{fields.get('phase')}: {fields.get('message', '')}"
                + (f" (about {eta:.0f} s)" if isinstance(eta, (int, float)) else "")
            )
        elif event in (Event.STARTED, *END_EVENTS, Event.INFO, Event.WARNING):
            detail = fields.get("message") or fields.get("error") or ""
            self._write(f"{event}: {detail}".rstrip(": "))

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
