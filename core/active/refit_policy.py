"""When the studio refits the current run: after every `every` corrections, or once the annotator
pauses for `pause_s` seconds with at least one correction not yet in a refit. Never while a
refit runs: corrections made meanwhile count toward the next one. Pure and Qt-free: the studio
feeds it counts and times and sets a timer from `seconds_until_due`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_EVERY = 20  # corrections between refits (issue 20: "about 20")
DEFAULT_PAUSE_S = 8.0  # a pause long enough to be one, short enough that the queue refreshes while looked at


@dataclass(frozen=True)
class RefitDecision:
    refit: bool
    reason: str  # why (or why not), for the status bar and logs


@dataclass(frozen=True)
class RefitPolicy:
    every: int = DEFAULT_EVERY
    pause_s: float | None = DEFAULT_PAUSE_S  # None: only every `every` corrections

    def __post_init__(self):
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ValueError(f"refit every: expected a whole number of corrections, 1 or more, not {self.every!r}")
        if self.pause_s is not None and not (math.isfinite(self.pause_s) and self.pause_s > 0):
            raise ValueError(f"refit pause: expected a number of seconds above 0 (or none), not {self.pause_s!r}")

    def decide(self, corrections: int, seconds_since_last: float | None, *, running: bool = False) -> RefitDecision:
        """`corrections`: made since the last refit started; `seconds_since_last`: since the
        newest of them (None: none yet); `running`: a refit is under way."""
        if corrections <= 0:
            return RefitDecision(False, "no corrections since the last refit")
        if running:
            return RefitDecision(False, f"a refit is running; {corrections} correction(s) wait for the next")
        if corrections >= self.every:
            return RefitDecision(True, f"{corrections} corrections since the last refit")
        if self.pause_s is not None and seconds_since_last is not None and seconds_since_last >= self.pause_s:
            return RefitDecision(True, f"a pause of {seconds_since_last:.0f} s after {corrections} correction(s)")
        return RefitDecision(False, f"{corrections} of {self.every} corrections")

    def seconds_until_due(self, corrections: int, seconds_since_last: float | None) -> float | None:
        """When to ask again if nothing else happens: the rest of the pause, or None (only a new
        correction can make a refit due)."""
        if corrections <= 0 or self.pause_s is None or seconds_since_last is None:
            return None
        return max(0.0, self.pause_s - seconds_since_last)
