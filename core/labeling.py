"""Label changes by annotators, with undo and redo computed from the corrections log.

Every change is one row of the append-only `corrections` table: the annotator's vote for the
face's label. In the same transaction the face's votes and its current `labels` row are decided
again from the log (core/team/votes.py: adjudication, else majority, else the label it had before
any vote). A *step* is what one undo takes back: a single correction, or all rows of a bulk change
(they share a `batch_id`). Undo marks the step `undone_at`, with the newest correction's id at
that moment (`undone_after_id`), so the annotator's earlier vote (or none) counts again; redo
re-applies the most recently undone step and clears both. Each correction also keeps the label
row it replaced (label, source, annotator, time): the history shows it, and a face's first
correction says what label it had before anyone voted. As in an editor, a new correction
empties the redo stack: only steps undone after the newest correction can be redone, which the
log's ids decide (never its clock times). Nothing lives in memory, so undo and redo survive a restart and work
the same from the studio, the command line, or two processes at once: every change reads the
current labels inside the transaction that writes them, which holds the write lock from its start
(`Project.write_session`; PostgreSQL: the face rows are locked and undo/redo take turns), so a
correction never records an old label that another writer had already replaced.

Bulk steps (several faces at once) leave faces of the val/test splits, and faces that already
have a label, as they are unless the caller includes them; the step's `left_out` says which.
A single face is changed as asked: the annotator looked at it.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.classes import ClassMapper, class_names
from core.store.models import (
    Correction,
    Image,
    Label,
    Prediction,
    utcnow,
)
from core.store.project import Project
from core.store.queries import RunNotFoundError, latest_finished_run_id, resolve_run_id
from core.team.votes import load_votes, refresh_faces

MAX_ANNOTATOR_LENGTH = 64  # the width of the annotator columns
EVAL_SPLITS = ("val", "test")  # faces that measure models: bulk steps leave them alone unless asked
UNDO_LOCK_KEY = 0x46455255  # PostgreSQL advisory lock ("FERU"): one undo or redo at a time


class LabelingError(ValueError):
    """A label change that cannot be made (unknown face, label or run); the message says why."""


@dataclass(frozen=True)
class FaceChange:
    face_id: int
    old_label: str | None  # None: unlabeled
    new_label: str | None


@dataclass(frozen=True)
class LeftOut:
    """Faces of a bulk step it left as they were because the caller did not include them."""

    labeled: tuple[int, ...] = ()  # train faces that already had a label
    val_test: tuple[int, ...] = ()  # faces of the val or test split

    def __bool__(self) -> bool:
        return bool(self.labeled or self.val_test)

    def describe(self) -> str:
        """e.g. '12 already labeled, 3 in val/test' ('' when nothing was left out)."""
        return _counts_text(len(self.labeled), len(self.val_test))


@dataclass(frozen=True)
class SelectionSummary:
    """What a selection of faces holds, for the question before a bulk step on it."""

    faces: int
    labeled: int  # train faces that already have a label
    val_test: int  # faces of the val or test split, labeled or not

    @property
    def unlabeled_train(self) -> int:
        """The faces a bulk step changes when nothing is included."""
        return self.faces - self.labeled - self.val_test

    def describe(self) -> str:
        """e.g. '135 faces selected: 12 already labeled, 3 in val/test'."""
        counts = _counts_text(self.labeled, self.val_test)
        return f"{self.faces:,} face{'s' if self.faces != 1 else ''} selected" + (f": {counts}" if counts else "")


@dataclass(frozen=True)
class LabelStep:
    """What one action changed, so a view can refresh just those faces."""

    action: str  # "label", "undo" or "redo"
    annotator: str  # who made the step (for undo/redo: the step's original annotator)
    batch_id: str | None
    correction_ids: tuple[int, ...]
    changes: tuple[FaceChange, ...]
    left_out: LeftOut = LeftOut()  # bulk steps: faces not included (val/test, already labeled)

    @property
    def face_ids(self) -> list[int]:
        return [c.face_id for c in self.changes]

    def describe(self) -> str:
        def name(label: str | None) -> str:
            return label or "unlabeled"

        def change(c: FaceChange) -> str:
            if c.old_label == c.new_label:  # a vote changed; the other votes keep the label
                return f"face {c.face_id}: {name(c.new_label)} (label stands)"
            return f"face {c.face_id}: {name(c.old_label)} -> {name(c.new_label)}"

        shown = "; ".join(change(c) for c in self.changes[:10]) or "no face changed"
        if len(self.changes) > 10:
            shown += f"; ... ({len(self.changes)} faces)"
        if self.left_out:
            shown += f" (left out: {self.left_out.describe()})"
        return shown


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    face_id: int
    annotator: str
    created_at: datetime
    old_label: str | None
    new_label: str | None
    suggestion: str | None
    run_id: int | None
    batch_id: str | None
    undone_at: datetime | None


@dataclass(frozen=True)
class Suggestion:
    run_id: int
    label: str
    confidence: float


def default_annotator() -> str:
    """The name recorded when none is given: the OS user."""
    try:
        return getpass.getuser() or "annotator"
    except Exception:  # noqa: BLE001 - no user name in this environment (some containers)
        return "annotator"


def check_annotator(name: str | None) -> str:
    """The name as corrections record it (trimmed), or a LabelingError (a ValueError) whose message
    the studio and the command line show: every check of an annotator name is this one."""
    cleaned = (name or "").strip()
    if not cleaned:
        raise LabelingError("an annotator name is needed: every correction is recorded under one")
    if len(cleaned) > MAX_ANNOTATOR_LENGTH:
        raise LabelingError(
            f"an annotator name has at most {MAX_ANNOTATOR_LENGTH} characters (this one has {len(cleaned)})"
        )
    return cleaned


def resolve_label(name: str) -> str:
    """A class name or alias (any case) -> the canonical class name, or a LabelingError."""
    canonical = ClassMapper().try_resolve(name)
    if canonical is None:
        raise LabelingError(
            f"unknown label {name!r}; use one of: {', '.join(class_names())} (or an alias such as happy, sad, angry)"
        )
    return canonical


# -- changing labels ---------------------------------------------------------------------------
def set_label(
    project: Project,
    face_id: int,
    label: str,
    annotator: str,
    *,
    suggestion: str | None = None,
    run_id: int | None = None,
    adjudicate: bool = False,
) -> LabelStep | None:
    """Record the annotator's vote for a face's label; the face's label is then decided from its
    votes (core/team/votes.py). Returns None (and logs nothing) if that is already their vote.

    `suggestion` and `run_id` record what the model proposed when the annotator decided.
    `adjudicate`: the adjudicator's final word, which decides the label over any majority."""
    edit = _Edit(
        int(face_id), resolve_label(label), resolve_label(suggestion) if suggestion else None, run_id, adjudicate
    )
    return _change(project, [edit], annotator, batch=False)


def adjudicate(project: Project, face_id: int, label: str, annotator: str) -> LabelStep | None:
    """The adjudicator's final label for a face whose votes disagree (logged as an adjudication)."""
    return set_label(project, face_id, label, annotator, adjudicate=True)


def clear_label(project: Project, face_id: int, annotator: str) -> LabelStep | None:
    """Make a face unlabeled again (logged like any change, so it can be undone)."""
    return _change(project, [_Edit(int(face_id), None)], annotator, batch=False)


def clear_labels(
    project: Project, face_ids: Iterable[int], annotator: str, *, include_val_test: bool = False
) -> LabelStep | None:
    """Make many faces unlabeled as a single undoable step; None if none had a label and none
    was left out. Labels of val/test faces stay unless `include_val_test`."""
    return _change(
        project,
        [_Edit(f, None) for f in _unique(face_ids)],
        annotator,
        batch=True,
        guard=_Guard(labeled=False, val_test=not include_val_test),
    )


def bulk_label(
    project: Project,
    face_ids: Iterable[int],
    label: str,
    annotator: str,
    *,
    run_id: int | None = None,
    include_labeled: bool = False,
    include_val_test: bool = False,
) -> LabelStep | None:
    """Give many faces one label as a single undoable step (one batch_id).

    Faces that already have a label and faces of val/test stay as they are unless included;
    the step's `left_out` lists them. None if nothing changed and nothing was left out."""
    canonical = resolve_label(label)
    return _change(
        project,
        [_Edit(f, canonical, None, run_id) for f in _unique(face_ids)],
        annotator,
        batch=True,
        guard=_Guard(labeled=not include_labeled, val_test=not include_val_test),
    )


def accept_suggestion(project: Project, face_id: int, annotator: str, run_id: int | None = None) -> LabelStep | None:
    """Take the run's prediction (default: the latest finished run) as the face's label."""
    return _accept(project, [int(face_id)], annotator, run_id, _NO_GUARD)


def accept_suggestions(
    project: Project,
    face_ids: Iterable[int],
    annotator: str,
    run_id: int | None = None,
    *,
    include_labeled: bool = False,
    include_val_test: bool = False,
) -> LabelStep | None:
    """Accept each face's own prediction as one undoable step; faces that already have a label
    and faces of val/test stay as they are unless included (see bulk_label)."""
    return _accept(
        project,
        _unique(face_ids),
        annotator,
        run_id,
        _Guard(labeled=not include_labeled, val_test=not include_val_test),
    )


def selection_summary(project: Project, face_ids: Iterable[int]) -> SelectionSummary:
    """How many of these faces already have a label and how many lie in val/test: what a bulk
    step leaves out unless told otherwise."""
    ids = _unique(face_ids)
    with project.session() as session:
        splits = _face_splits(session, ids)
        _, left_out = _Guard(labeled=True, val_test=True).split(ids, splits, _current_labels(session, ids))
    return SelectionSummary(len(ids), len(left_out.labeled), len(left_out.val_test))


def suggestion_for(project: Project, face_id: int, run_id: int | None = None) -> Suggestion | None:
    """The model's proposal for a face (default: the latest finished run), or None."""
    with project.session() as session:
        run_id = run_id if run_id is not None else latest_finished_run_id(session)
        if run_id is None:
            return None
        row = session.execute(
            select(Prediction.pseudo_label, Prediction.confidence).where(
                Prediction.run_id == run_id, Prediction.image_id == int(face_id)
            )
        ).first()
    return Suggestion(run_id, row.pseudo_label, row.confidence) if row else None


# -- undo and redo -----------------------------------------------------------------------------
def undo(project: Project, annotator: str | None = None) -> LabelStep | None:
    """Take back the latest step not yet undone (only `annotator`'s steps if given): its votes
    go back to what they were, and each face's label is decided again from the votes it has."""
    with project.write_session() as session:
        _one_undo_at_a_time(session)
        rows = _latest_done_step(session, annotator)
        if not rows:
            return None
        newest_id = session.scalar(select(func.max(Correction.id)))  # where in the log this undo happened
        now = utcnow()
        for row in rows:
            row.undone_at, row.undone_after_id = now, newest_id
        return _step("undo", rows, _decide_again(session, [r.image_id for r in rows]))


def redo(project: Project, annotator: str | None = None) -> LabelStep | None:
    """Re-apply the most recently undone step, unless a new correction came after its undo."""
    with project.write_session() as session:
        _one_undo_at_a_time(session)
        rows = _latest_undone_step(session, annotator)
        if not rows:
            return None
        for row in rows:
            row.undone_at, row.undone_after_id = None, None
        return _step("redo", rows, _decide_again(session, [r.image_id for r in rows]))


def _decide_again(session: Session, face_ids: list[int]) -> list[FaceChange]:
    """After votes of these faces changed in the log: their votes and labels re-derived, and what
    each face's label was and is now."""
    before = _locked_labels(session, face_ids)
    was = {f: (before[f].label if f in before else None) for f in face_ids}
    session.flush()
    after = refresh_faces(session, face_ids, before)
    return [FaceChange(f, was[f], after[f].label if f in after else None) for f in face_ids]


@dataclass(frozen=True)
class UndoState:
    """Whether undo and redo would do something now, for one annotator (or anyone's steps)."""

    can_undo: bool
    can_redo: bool


def undo_state(project: Project, annotator: str | None = None) -> UndoState:
    """What `undo(project, annotator)` and `redo(project, annotator)` would find now: two
    existence queries on the corrections log, cheap enough after every change."""
    with project.session() as session:
        return UndoState(_exists(session, _done_rows(annotator)), _exists(session, _redoable_rows(annotator)))


def can_undo(project: Project, annotator: str | None = None) -> bool:
    return undo_state(project, annotator).can_undo


def can_redo(project: Project, annotator: str | None = None) -> bool:
    return undo_state(project, annotator).can_redo


def _exists(session: Session, query) -> bool:
    return session.scalar(select(query.exists())) or False


def history(
    project: Project, limit: int = 50, *, annotator: str | None = None, face_id: int | None = None
) -> list[HistoryEntry]:
    """The corrections log, newest first, undone rows included (with their undone_at)."""
    query = select(Correction).order_by(Correction.id.desc()).limit(limit)
    if annotator is not None:
        query = query.where(Correction.annotator == annotator)
    if face_id is not None:
        query = query.where(Correction.image_id == int(face_id))
    with project.session() as session:
        return [
            HistoryEntry(
                c.id,
                c.image_id,
                c.annotator,
                c.created_at,
                c.old_label,
                c.new_label,
                c.suggestion,
                c.run_id,
                c.batch_id,
                c.undone_at,
            )
            for c in session.scalars(query)
        ]


# -- internals ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Edit:
    face_id: int
    label: str | None
    suggestion: str | None = None
    run_id: int | None = None
    adjudicated: bool = False


@dataclass(frozen=True)
class _Guard:
    """Which faces a step leaves as they are: those already labeled, those of val/test."""

    labeled: bool = True
    val_test: bool = True

    def split(self, face_ids: list[int], splits: dict[int, str], labels: dict[int, Label]) -> tuple[list[int], LeftOut]:
        """The faces to change, and those left out (a labeled val face counts as val/test)."""
        kept, labeled, val_test = [], [], []
        for face_id in face_ids:
            if self.val_test and splits[face_id] in EVAL_SPLITS:
                val_test.append(face_id)
            elif self.labeled and face_id in labels:
                labeled.append(face_id)
            else:
                kept.append(face_id)
        return kept, LeftOut(tuple(labeled), tuple(val_test))


_NO_GUARD = _Guard(labeled=False, val_test=False)  # one face: changed as asked


def _change(
    project: Project, edits: list[_Edit], annotator: str, *, batch: bool, guard: _Guard = _NO_GUARD
) -> LabelStep | None:
    with project.write_session() as session:
        for run_id in {e.run_id for e in edits if e.run_id is not None}:
            _resolve_run(session, run_id)
        labels, kept, left_out = _guarded_labels(session, [e.face_id for e in edits], guard)
        chosen = set(kept)
        return _apply(
            session, [e for e in edits if e.face_id in chosen], labels, annotator, batch=batch, left_out=left_out
        )


def _accept(project: Project, ids: list[int], annotator: str, run_id: int | None, guard: _Guard) -> LabelStep | None:
    with project.write_session() as session:
        run_id = _resolve_run(session, run_id)
        labels, kept, left_out = _guarded_labels(session, ids, guard)
        predicted = dict(
            session.execute(
                select(Prediction.image_id, Prediction.pseudo_label).where(
                    Prediction.run_id == run_id, Prediction.image_id.in_(kept)
                )
            ).all()
        )
        missing = [f for f in kept if f not in predicted]
        if missing:
            raise LabelingError(f"run {run_id} has no prediction for face {_id_list(missing)}")
        edits = [_Edit(f, predicted[f], predicted[f], run_id) for f in kept]
        return _apply(session, edits, labels, annotator, batch=len(ids) > 1, left_out=left_out)


def _guarded_labels(
    session: Session, face_ids: list[int], guard: _Guard
) -> tuple[dict[int, Label], list[int], LeftOut]:
    """The faces' current labels (their rows locked), the faces to change and those left out."""
    splits = _face_splits(session, face_ids, lock=True)
    labels = _current_labels(session, face_ids)
    kept, left_out = guard.split(face_ids, splits, labels)
    return labels, kept, left_out


def _apply(
    session: Session,
    edits: list[_Edit],
    labels: dict[int, Label],
    annotator: str,
    *,
    batch: bool,
    left_out: LeftOut = LeftOut(),
) -> LabelStep | None:
    """Log the edits as the annotator's votes and decide the faces' labels again; `labels` are
    the current label rows read (and locked) in this transaction. An edit that repeats the
    annotator's own vote logs nothing; one on a face they have not voted on is a vote even if
    it agrees with the face's label (agreement is measured from such votes)."""
    annotator = check_annotator(annotator)
    now = utcnow()
    batch_id = str(uuid.uuid4()) if batch else None
    own = {v.face_id: v for v in load_votes(session, [e.face_id for e in edits], annotator=annotator)}
    rows = []
    for edit in edits:
        old = labels.get(edit.face_id)
        vote = own.get(edit.face_id)
        if vote is not None and vote.label == edit.label and vote.adjudicated == edit.adjudicated:
            continue
        if vote is None and edit.label is None and old is None:
            continue  # clearing a face that has no label and no vote of theirs
        row = Correction(
            image_id=edit.face_id,
            annotator=annotator,
            created_at=now,
            old_label=old.label if old else None,
            new_label=edit.label,
            suggestion=edit.suggestion,
            run_id=edit.run_id,
            batch_id=batch_id,
            old_source=old.source if old else None,
            old_annotator=old.annotator if old else None,
            old_updated_at=old.updated_at if old else None,
            adjudicated=edit.adjudicated,
        )
        session.add(row)
        rows.append(row)
    if not rows:
        return LabelStep("label", annotator, None, (), (), left_out=left_out) if left_out else None
    session.flush()  # assigns the correction ids
    face_ids = [r.image_id for r in rows]
    was = {f: (labels[f].label if f in labels else None) for f in face_ids}
    after = refresh_faces(session, face_ids, labels)
    changes = [FaceChange(f, was[f], after[f].label if f in after else None) for f in face_ids]
    return _step("label", rows, changes, left_out)


def _done_rows(annotator: str | None):
    """The corrections undo may take back: not undone (only `annotator`'s if given)."""
    query = select(Correction).where(Correction.undone_at.is_(None))
    return query if annotator is None else query.where(Correction.annotator == annotator)


def _latest_done_step(session: Session, annotator: str | None) -> list[Correction]:
    last = session.scalar(_done_rows(annotator).order_by(Correction.id.desc()).limit(1))
    if last is None or last.batch_id is None:
        return [last] if last else []
    return list(
        session.scalars(
            select(Correction)
            .where(Correction.batch_id == last.batch_id, Correction.undone_at.is_(None))
            .order_by(Correction.id)
        )
    )


def _redoable_rows(annotator: str | None):
    """The corrections redo may re-apply: undone when the newest correction (`annotator`'s, if
    given) was already in the log; a correction logged after an undo overwrote it. Decided by
    the log's ids, never by its times."""
    newest = select(func.max(Correction.id))
    query = select(Correction).where(Correction.undone_at.is_not(None))
    if annotator is not None:
        newest = newest.where(Correction.annotator == annotator)
        query = query.where(Correction.annotator == annotator)
    return query.where(Correction.undone_after_id >= newest.scalar_subquery())


def _latest_undone_step(session: Session, annotator: str | None) -> list[Correction]:
    # The most recently undone: undone latest in the log, and of the steps undone with nothing
    # logged between them, the lowest id (undo takes the highest first, so it went last).
    query = _redoable_rows(annotator)
    last = session.scalar(query.order_by(Correction.undone_after_id.desc(), Correction.id).limit(1))
    if last is None or last.batch_id is None:
        return [last] if last else []
    return list(
        session.scalars(
            select(Correction)
            .where(Correction.batch_id == last.batch_id, Correction.undone_at.is_not(None))
            .order_by(Correction.id)
        )
    )


def _one_undo_at_a_time(session: Session) -> None:
    """Undo and redo pick "the latest step": two at once would pick the same one. SQLite's write
    session already lets one writer in at a time; PostgreSQL takes a transaction-level advisory
    lock (label changes need no such turn-taking: they lock the face rows they change)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(UNDO_LOCK_KEY)))


def _step(
    action: str, rows: Sequence[Correction], changes: list[FaceChange], left_out: LeftOut = LeftOut()
) -> LabelStep:
    ids = tuple(r.id for r in rows)
    return LabelStep(action, rows[0].annotator, rows[0].batch_id, ids, tuple(changes), left_out)


def _locked_labels(session: Session, face_ids: list[int]) -> dict[int, Label]:
    """The faces' current label rows, read after locking the faces (see _face_splits)."""
    _face_splits(session, face_ids, lock=True)
    return _current_labels(session, face_ids)


def _current_labels(session: Session, face_ids: list[int]) -> dict[int, Label]:
    return {row.image_id: row for row in session.scalars(select(Label).where(Label.image_id.in_(face_ids)))}


def _face_splits(session: Session, face_ids: list[int], *, lock: bool = False) -> dict[int, str]:
    """Each face's split; a LabelingError names faces that do not exist. `lock`: PostgreSQL
    locks the face rows until commit (FOR UPDATE, in id order, so two steps cannot deadlock);
    SQLite ignores it, its write session holds the whole database."""
    if not face_ids:
        raise LabelingError("no faces given")
    query = select(Image.id, Image.split).where(Image.id.in_(face_ids)).order_by(Image.id)
    splits = dict(session.execute(query.with_for_update() if lock else query).all())
    missing = [f for f in face_ids if f not in splits]
    if missing:
        raise LabelingError(f"there is no face {_id_list(missing)} in this project")
    return splits


def _resolve_run(session: Session, run_id: int | None) -> int:
    try:
        return resolve_run_id(session, run_id)
    except RunNotFoundError as exc:
        raise LabelingError(str(exc)) from None


def _unique(face_ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(f) for f in face_ids))


def _counts_text(labeled: int, val_test: int) -> str:
    parts = [f"{labeled:,} already labeled"] if labeled else []
    return ", ".join(parts + ([f"{val_test:,} in val/test"] if val_test else []))


def _id_list(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:10])) + (f" ... ({len(ids)} in all)" if len(ids) > 10 else "")
