"""Where a run is, from the moment Start is pressed: the phases in a row (done, current, to come),
a bar for the current phase (n of N where the worker counts, busy where it cannot: starting,
loading the encoder, the map), and the time left in this phase.

It follows the worker's events (core/training/events.py: phase and progress); between events
a one-second tick keeps the elapsed time and the map's estimate moving, so the panel never sits
still on a full bar while the map is computed.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from app.run_history import format_duration
from core.training.events import PHASES, Event

TITLES = {
    "starting": "starting",
    "encoder": "encoder",
    "features": "features",
    "training": "training",
    "predictions": "predictions",
    "map": "map",
}
UNITS = {"features": "faces", "training": "steps", "predictions": "faces"}
ALIASES = {"train": "training"}  # older workers named the training phase's progress "train"
DONE_COLOR, CURRENT_COLOR, LATER_COLOR = "#7bd88f", "#6ea8fe", "#6b7280"
IDLE_TEXT = "no run going"


class RunProgress(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.phase: str | None = None
        self.message = ""
        self.done: set[str] = set()
        self._phase_started = 0.0
        self._phase_eta: float | None = None  # the phase event's own estimate (the map's)
        self._counted = False  # the current phase has sent n of N
        self.strip = QLabel()
        self.strip.setObjectName("phaseStrip")
        self.strip.setTextFormat(Qt.TextFormat.RichText)
        self.strip.setWordWrap(True)  # a narrow dock wraps the phases rather than hiding the current one
        self.strip.setStyleSheet("font-size: 11px;")
        self.strip.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.eta = QLabel()
        self.eta.setObjectName("columnHeader")
        self.eta.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.eta)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        layout.addWidget(self.strip)
        layout.addLayout(row)
        self.ticker = QTimer(self)
        self.ticker.setInterval(1000)
        self.ticker.timeout.connect(self._tick)
        self.reset()

    # -- what the panel tells it ----------------------------------------------------------------
    def reset(self) -> None:
        """No run going."""
        self.ticker.stop()
        self.phase, self.message, self.done = None, "", set()
        self.strip.setText("")
        self.eta.setText("")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat(IDLE_TEXT)

    def begin(self, message: str = "starting the worker process…") -> None:
        """Start was pressed: the starting phase, before the worker has said anything."""
        self.reset()
        self.ticker.start()
        self.enter("starting", message)

    def enter(self, phase: str, message: str = "", eta_s: float | None = None) -> None:
        """The worker moved on to `phase` (earlier phases count as done)."""
        phase = ALIASES.get(phase, phase)
        if phase in PHASES:
            self.done.update(PHASES[: PHASES.index(phase)])
        self.phase, self.message = phase, message or TITLES.get(phase, phase)
        self._phase_started, self._phase_eta, self._counted = time.monotonic(), eta_s, False
        self.bar.setRange(0, 0)  # busy until the phase counts
        self.bar.setFormat(self.message)
        self._show_strip()
        self._tick()

    def count(self, phase: str, step: int, total: int, eta_s: float | None) -> None:
        """n of N within a phase (a progress event)."""
        phase = ALIASES.get(phase, phase)
        if phase != self.phase:
            self.enter(phase)
        self._counted = True
        total = max(total, 1)
        self.bar.setRange(0, total)
        self.bar.setValue(min(step, total))
        unit = UNITS.get(phase, "")
        self.bar.setFormat(f"{TITLES.get(phase, phase)}: {step:,} / {total:,} {unit}".rstrip())
        if eta_s is None and step > 0:  # no estimate from the worker: the rate so far
            eta_s = (time.monotonic() - self._phase_started) / step * (total - step)
        self.eta.setText(f"about {format_duration(eta_s)} left" if eta_s is not None and step < total else "")

    def finish(self, status: str) -> None:
        """The run ended: a full bar only for a finished run."""
        self.ticker.stop()
        if status == Event.FINISHED:
            self.done.update(PHASES)
            self.phase = None
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
            self.bar.setFormat("done")
        else:
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
            phase = TITLES.get(self.phase, self.phase) if self.phase else "the start"
            self.bar.setFormat(f"{status} during {phase}")
        self.eta.setText("")
        self._show_strip()

    # -- showing ----------------------------------------------------------------------------------
    def _tick(self) -> None:
        """Phases that do not count show their elapsed time, or what is left of their estimate."""
        if self.phase is None or self._counted:
            return
        elapsed = time.monotonic() - self._phase_started
        if self._phase_eta is not None:
            left = self._phase_eta - elapsed
            self.eta.setText(
                f"about {format_duration(left)} left"
                if left >= 1
                else f"longer than estimated: {format_duration(elapsed)} so far"
            )
        else:
            self.eta.setText(format_duration(elapsed) if elapsed >= 0.5 else "")  # elapsed, ticking

    def _show_strip(self) -> None:
        parts = []
        for phase in PHASES:
            title = TITLES[phase]
            if phase == self.phase:
                parts.append(f"<b style='color:{CURRENT_COLOR}'>● {title}</b>")
            elif phase in self.done:
                parts.append(f"<span style='color:{DONE_COLOR}'>✓ {title}</span>")
            else:
                parts.append(f"<span style='color:{LATER_COLOR}'>{title}</span>")
        self.strip.setText(" &nbsp;".join(parts))
        self.strip.setToolTip(self.message)
