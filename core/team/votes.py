"""Votes and consensus: each annotator's label of a face is a vote; the face's label is decided
from its votes.

A vote is an annotator's newest correction of a face that is not undone (`corrections` is the
log, `votes` keeps the current ones so nothing has to replay the log). The face's label row (what
training, the queue and every view use) is then decided, in the transaction that changed a vote:

1. an adjudication (a correction marked `adjudicated`, the adjudicator's final word): the newest
   one decides;
2. otherwise the majority of the votes; "no label" is a vote like any other (an annotator who
   clears a face says it should not train), and a tie goes to the newest vote among the tied
   labels, so with one annotator their newest word always stands, as before votes existed;
3. no vote left (all undone): the label the face had before anyone voted on it (the imported
   one, or none), which its first correction recorded as its old row.

Everything is recomputed from the log for the faces a step touched, so undo and redo are just
"mark undone / not undone, then decide again", and two annotators' steps on one face can be
undone in any order without one overwriting the other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from core.classes import class_names
from core.store.models import SOURCE_ANNOTATOR, SOURCE_IMPORTED, Correction, Label
from core.store.models import Vote as VoteRow

CHUNK = 500  # faces per IN (...) query: well under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True)
class Vote:
    face_id: int
    annotator: str
    label: str | None  # a canonical class name; None: "this face should have no label"
    adjudicated: bool  # the adjudicator's final word
    created_at: datetime


@dataclass(frozen=True)
class Decision:
    """A face's label row: what it says and where it came from."""

    label: str
    source: str
    annotator: str | None
    updated_at: datetime


@dataclass(frozen=True)
class Cast:
    """A vote with its place in the log (newer = higher id), for deciding ties."""

    correction_id: int
    annotator: str
    label: str | None
    adjudicated: bool
    created_at: datetime


def decide(votes: Sequence[Cast], base: Decision | None) -> Decision | None:
    """The face's label row from its current votes (see the module's rules); None: unlabeled."""
    if not votes:
        return base
    adjudications = [v for v in votes if v.adjudicated]
    if adjudications:
        winner = max(adjudications, key=lambda v: v.correction_id)
    else:
        counts = Counter(v.label for v in votes)
        most = max(counts.values())
        tied = {label for label, count in counts.items() if count == most}
        winner = max((v for v in votes if v.label in tied), key=lambda v: v.correction_id)
    if winner.label is None:
        return None
    return Decision(winner.label, SOURCE_ANNOTATOR, winner.annotator, winner.created_at)


def refresh_faces(session: Session, face_ids: Iterable[int], labels: dict[int, Label]) -> dict[int, Label]:
    """Re-derive the votes of these faces from the log and write each face's decided label row.

    `labels` holds the faces' current label rows (read, and on PostgreSQL locked, by the caller in
    this transaction); the rows after the change are returned, a face left unlabeled absent."""
    ids = list(dict.fromkeys(int(f) for f in face_ids))
    casts: dict[int, dict[str, Cast]] = {f: {} for f in ids}
    firsts: dict[int, Correction] = {}
    for chunk in _chunks(ids):
        for row in session.scalars(
            select(Correction)
            .where(Correction.image_id.in_(chunk), Correction.undone_at.is_(None))
            .order_by(Correction.id)
        ):
            # In log order, so each annotator's newest correction is the one kept.
            casts[row.image_id][row.annotator] = Cast(
                row.id, row.annotator, row.new_label, bool(row.adjudicated), row.created_at
            )
        first_ids = select(func.min(Correction.id)).where(Correction.image_id.in_(chunk)).group_by(Correction.image_id)
        for row in session.scalars(select(Correction).where(Correction.id.in_(first_ids))):
            firsts[row.image_id] = row
        session.execute(delete(VoteRow).where(VoteRow.image_id.in_(chunk)))
    rows = [
        {
            "image_id": face_id,
            "annotator": cast.annotator,
            "label": cast.label,
            "adjudicated": cast.adjudicated,
            "correction_id": cast.correction_id,
            "created_at": cast.created_at,
        }
        for face_id in ids
        for cast in casts[face_id].values()
    ]
    if rows:
        session.execute(insert(VoteRow), rows)
    result = dict(labels)
    for face_id in ids:
        first = firsts.get(face_id)
        base = _label_before_votes(first) if first is not None else _as_decision(labels.get(face_id))
        decision = decide(list(casts[face_id].values()), base)
        written = _write(session, face_id, decision, labels.get(face_id))
        if written is None:
            result.pop(face_id, None)
        else:
            result[face_id] = written
    return result


def load_votes(session: Session, face_ids: Iterable[int] | None = None, *, annotator: str | None = None) -> list[Vote]:
    """The current votes (of these faces, of this annotator), by face then annotator."""
    query = select(VoteRow).order_by(VoteRow.image_id, VoteRow.annotator)
    if annotator is not None:
        query = query.where(VoteRow.annotator == annotator)
    if face_ids is None:
        return [_vote(row) for row in session.scalars(query)]
    votes: list[Vote] = []
    for chunk in _chunks(list(dict.fromkeys(int(f) for f in face_ids))):
        votes.extend(_vote(row) for row in session.scalars(query.where(VoteRow.image_id.in_(chunk))))
    return sorted(votes, key=lambda v: (v.face_id, v.annotator))


def voted_faces(session: Session, annotator: str, face_ids: Iterable[int] | None = None) -> set[int]:
    """The faces this annotator has a vote on (among `face_ids`, if given)."""
    query = select(VoteRow.image_id).where(VoteRow.annotator == annotator)
    if face_ids is not None:
        query = query.where(VoteRow.image_id.in_([int(f) for f in face_ids]))
    return set(session.scalars(query))


def vote_counts(session: Session, face_ids: Iterable[int] | None = None) -> dict[int, int]:
    """How many annotators voted on each face that has a vote (adjudications included; among
    `face_ids`, if given)."""
    query = select(VoteRow.image_id, func.count()).group_by(VoteRow.image_id)
    if face_ids is not None:
        query = query.where(VoteRow.image_id.in_([int(f) for f in face_ids]))
    return dict(session.execute(query).all())


def vote_distributions(votes: Iterable[Vote]) -> dict[int, np.ndarray]:
    """Each voted face's share of votes per class (class order of core/resources/classes.json),
    the soft target of training with --soft-labels. An adjudicated face gets its adjudication as
    a one-hot target (the final word); "no label" votes are left out of the shares, and a face
    whose votes are all "no label" gets none."""
    index = {name: i for i, name in enumerate(class_names())}
    by_face: dict[int, list[Vote]] = {}
    for vote in votes:
        by_face.setdefault(vote.face_id, []).append(vote)
    shares: dict[int, np.ndarray] = {}
    for face_id, face_votes in by_face.items():
        adjudicated = [v for v in face_votes if v.adjudicated]
        counted = [max(adjudicated, key=lambda v: v.created_at)] if adjudicated else face_votes
        target = np.zeros(len(index), dtype=np.float32)
        for vote in counted:
            if vote.label is not None:
                target[index[vote.label]] += 1.0
        if target.sum() > 0:
            shares[face_id] = target / target.sum()
    return shares


def disputed_faces(votes: Iterable[Vote]) -> dict[int, Counter[str | None]]:
    """Faces whose annotators' votes disagree and that no adjudication has settled, with each
    one's vote counts per label (None: "no label")."""
    by_face: dict[int, list[Vote]] = {}
    for vote in votes:
        by_face.setdefault(vote.face_id, []).append(vote)
    return {
        face_id: Counter(v.label for v in face_votes)
        for face_id, face_votes in by_face.items()
        if not any(v.adjudicated for v in face_votes) and len({v.label for v in face_votes}) > 1
    }


def _label_before_votes(first: Correction) -> Decision | None:
    """The label row the face's first correction replaced: what it had before any vote."""
    if first.old_label is None:
        return None
    if first.old_source is None:  # logged before schema 2, which kept only the old label
        return Decision(first.old_label, SOURCE_IMPORTED, None, first.created_at)
    return Decision(first.old_label, first.old_source, first.old_annotator, first.old_updated_at or first.created_at)


def _as_decision(row: Label | None) -> Decision | None:
    return None if row is None else Decision(row.label, row.source, row.annotator, row.updated_at)


def _write(session: Session, face_id: int, decision: Decision | None, current: Label | None) -> Label | None:
    if decision is None:
        if current is not None:
            session.delete(current)
        return None
    if current is None:
        current = Label(image_id=face_id)
        session.add(current)
    current.label, current.source = decision.label, decision.source
    current.annotator, current.updated_at = decision.annotator, decision.updated_at
    return current


def _vote(row: VoteRow) -> Vote:
    return Vote(row.image_id, row.annotator, row.label, bool(row.adjudicated), row.created_at)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
