"""What the rest of the team changed since a studio last looked: the live updates of a shared
project (app/team_poller.py asks every few seconds, off the GUI thread).

New votes are the corrections logged after the newest one the studio has seen: a range query on
the log's primary key (`id > last_seen`), as cheap on a log of millions as on an empty one.
On PostgreSQL two writers commit in either order, so an id below the newest seen may commit a
moment later: ids skipped over are kept as gaps and looked up again (in the same query) for
GAP_SECONDS, far longer than a label step's transaction (a rolled-back one leaves a gap for good).

Undo and redo log no row (they mark and unmark `undone_at`), so the undone rows among the newest
UNDO_WINDOW corrections are read too (another range on the key, a handful of rows) and compared
with those seen last time: a row that became undone was undone, one that no longer is, redone.
An undo or redo of a step older than the window is not seen until that face changes again.

A `TeamWatch` carries what was seen from one call to the next; the first call only takes stock.
Rows of `annotator` (the studio's own) are left out: the studio announced them when it made them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.store.models import Correction

UNDO_WINDOW = 20_000  # newest corrections whose undo or redo is noticed (a millisecond or two to read)
GAP_SECONDS = 120.0  # how long an id skipped over may still commit
MAX_GAPS = 50  # gap ranges looked up again (the newest), so the query stays short


@dataclass(frozen=True)
class Gap:
    """Ids below the newest seen that were not committed when it was: they may still come."""

    first: int
    last: int
    noticed_at: float  # time.monotonic()


@dataclass(frozen=True)
class TeamWatch:
    """What a studio has seen of the log: the newest correction id, the gaps below it, and the
    undone corrections (id, face, annotator) among the newest UNDO_WINDOW."""

    last_id: int
    gaps: tuple[Gap, ...] = ()
    undone: frozenset[tuple[int, int, str]] = frozenset()


@dataclass(frozen=True)
class TeamActivity:
    """Others' changes since the last look, and the watch to pass next time."""

    watch: TeamWatch
    face_ids: tuple[int, ...] = ()  # faces whose votes others changed (their label may stand)
    labels: Counter[str] = field(default_factory=Counter)  # new votes per annotator, adjudications apart
    adjudications: Counter[str] = field(default_factory=Counter)
    undone: Counter[str] = field(default_factory=Counter)  # corrections undone or redone, per annotator

    def __bool__(self) -> bool:
        return bool(self.face_ids)

    def describe(self) -> str:
        """e.g. 'ben: 3 labels · lead: 1 adjudication · cy: 1 undone or redone' ('' if nothing)."""
        said: dict[str, list[str]] = {}
        for counts, what in ((self.labels, "label"), (self.adjudications, "adjudication")):
            for name, n in counts.items():
                said.setdefault(name, []).append(f"{n:,} {what}{'s' if n != 1 else ''}")
        for name, n in self.undone.items():
            said.setdefault(name, []).append(f"{n:,} undone or redone")
        return " · ".join(f"{name}: {', '.join(parts)}" for name, parts in sorted(said.items()))


def team_activity(session: Session, watch: TeamWatch | None, annotator: str, now: float | None = None) -> TeamActivity:
    """Corrections by annotators other than `annotator` logged, undone or redone since `watch`
    (None: the first look, which reports nothing and returns the watch to start from)."""
    now = time.monotonic() if now is None else now
    if watch is None:
        last = session.scalar(select(func.max(Correction.id))) or 0
        return TeamActivity(TeamWatch(last, (), _undone(session, last)))
    gaps = [gap for gap in watch.gaps if now - gap.noticed_at < GAP_SECONDS]
    new = session.execute(
        select(Correction.id, Correction.image_id, Correction.annotator, Correction.adjudicated)
        .where(or_(Correction.id > watch.last_id, *(Correction.id.between(g.first, g.last) for g in gaps)))
        .order_by(Correction.id)
    ).all()
    found = [row.id for row in new]
    last = max(watch.last_id, found[-1] if found else 0)
    gaps = [hole for gap in gaps for hole in _holes(gap.first, gap.last, found, gap.noticed_at)]
    gaps += _holes(watch.last_id + 1, last, found, now)
    undone = _undone(session, last)
    floor = last - UNDO_WINDOW
    flipped = undone ^ {row for row in watch.undone if row[0] > floor}
    faces: dict[int, None] = {}
    labels: Counter[str] = Counter()
    adjudications: Counter[str] = Counter()
    undone_by: Counter[str] = Counter()
    for row in new:
        if row.annotator != annotator:
            faces[row.image_id] = None
            (adjudications if row.adjudicated else labels)[row.annotator] += 1
    new_ids = set(found)
    for correction_id, face_id, name in sorted(flipped):
        if name != annotator and correction_id not in new_ids:  # one undone at once is already new
            faces[face_id] = None
            undone_by[name] += 1
    watch = TeamWatch(last, tuple(gaps[-MAX_GAPS:]), undone)
    return TeamActivity(watch, tuple(faces), labels, adjudications, undone_by)


def _undone(session: Session, last_id: int) -> frozenset[tuple[int, int, str]]:
    """The undone corrections among the UNDO_WINDOW newest up to `last_id`: (id, face, annotator)."""
    rows = session.execute(
        select(Correction.id, Correction.image_id, Correction.annotator).where(
            Correction.id > last_id - UNDO_WINDOW, Correction.id <= last_id, Correction.undone_at.is_not(None)
        )
    )
    return frozenset((row.id, row.image_id, row.annotator) for row in rows)


def _holes(first: int, last: int, found: Iterable[int], noticed_at: float) -> list[Gap]:
    """The runs of ids in first..last that are not in `found` (sorted)."""
    holes, start = [], first
    for i in found:
        if i < start or i > last:
            continue
        if i > start:
            holes.append(Gap(start, i - 1, noticed_at))
        start = i + 1
    if start <= last:
        holes.append(Gap(start, last, noticed_at))
    return holes
