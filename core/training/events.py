"""The worker's event stream: one JSON object per line on stdout, for the studio to follow.

Events: started, progress (step, total, eta_s), metrics (step, values), finished, cancelled,
failed (error). Without --events json the same events drive a readable progress bar.
"""
from __future__ import annotations

import json
import math
import sys
import time
from typing import IO, Any

from tqdm import tqdm


class EventSink:
    def emit(self, event: str, **fields: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NullEvents(EventSink):
    """For the ranks of a distributed run other than the first: one voice is enough."""

    def emit(self, event: str, **fields: Any) -> None:
        pass


class JsonEvents(EventSink):
    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
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
        self.bar: tqdm | None = None
        self.phase = ""

    def emit(self, event: str, **fields: Any) -> None:
        if event == "progress":
            if self.quiet:
                return
            phase = fields.get("phase", "train")
            if self.bar is None or self.phase != phase:
                self.close()
                self.phase = phase
                self.bar = tqdm(total=fields["total"], desc=phase, file=sys.stderr,
                                disable=None, leave=False, dynamic_ncols=True)
            self.bar.n = fields["step"]
            self.bar.refresh()
        elif event == "metrics":
            values = fields.get("values", {})
            shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items()
                              if isinstance(v, (int, float)) and ("acc" in k or k.startswith("loss")))
            if shown and not self.quiet:
                self._write(f"step {fields.get('step')}: {shown}")
        elif event in ("started", "finished", "cancelled", "failed", "info"):
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
