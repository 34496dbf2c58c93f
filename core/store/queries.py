"""Read-side queries shared by the CLI, the trainer and the studio."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.classes import class_names
from core.store.models import (
    RUN_FINISHED,
    SPLITS,
    STATUS_ACTIVE,
    Correction,
    HiddenTruth,
    Image,
    Label,
    Run,
)
from core.store.runs import pruned_run_message


def project_stats(session: Session) -> dict:
    """Counts of active faces by split, label and label source (the `stats` command's JSON)."""
    active = Image.status == STATUS_ACTIVE
    images = session.scalar(select(func.count()).select_from(Image).where(active)) or 0
    labeled = (
        session.scalar(select(func.count()).select_from(Label).join(Image, Image.id == Label.image_id).where(active))
        or 0
    )
    by_label = {name: 0 for name in class_names()}
    for label, count in session.execute(
        select(Label.label, func.count()).join(Image, Image.id == Label.image_id).where(active).group_by(Label.label)
    ):
        by_label[label] = count
    by_split = {split: {"images": 0, "labeled": 0, "unlabeled": 0} for split in SPLITS}
    for split, total, with_label in session.execute(
        select(Image.split, func.count(Image.id), func.count(Label.image_id))
        .outerjoin(Label, Label.image_id == Image.id)
        .where(active)
        .group_by(Image.split)
    ):
        by_split[split] = {"images": total, "labeled": with_label, "unlabeled": total - with_label}
    by_source = dict(
        session.execute(
            select(Label.source, func.count())
            .join(Image, Image.id == Label.image_id)
            .where(active)
            .group_by(Label.source)
        ).all()
    )
    by_status = dict(session.execute(select(Image.status, func.count()).group_by(Image.status)).all())
    return {
        "images": images,
        "labeled": labeled,
        "unlabeled": images - labeled,
        "by_label": by_label,
        "by_split": by_split,
        "by_source": by_source,
        "by_status": by_status,
        "hidden_truth": session.scalar(select(func.count()).select_from(HiddenTruth)) or 0,
        "corrections": session.scalar(
            select(func.count()).select_from(Correction).where(Correction.undone_at.is_(None))
        )
        or 0,
        "runs": session.scalar(select(func.count()).select_from(Run)) or 0,
    }


@dataclass(frozen=True)
class FaceRow:
    id: int
    path: str
    crop_path: str | None
    box: tuple[int, int, int, int] | None
    split: str
    label: str | None
    label_source: str | None
    angle: float | None = None  # degrees its crop was turned to level the eyes


def list_faces(
    session: Session,
    *,
    split: str | None = None,
    labeled: bool | None = None,
    label: str | None = None,
    limit: int | None = None,
    ids: list[int] | None = None,
) -> list[FaceRow]:
    """Active faces in id order, filtered; the label is the current one (never hidden truth).
    `ids` picks a few given faces (one SQL parameter each: keep it to hundreds)."""
    query = (
        select(
            Image.id,
            Image.path,
            Image.crop_path,
            Image.face_x,
            Image.face_y,
            Image.face_w,
            Image.face_h,
            Image.split,
            Label.label,
            Label.source,
            Image.face_angle,
        )
        .outerjoin(Label, Label.image_id == Image.id)
        .where(Image.status == STATUS_ACTIVE)
        .order_by(Image.id)
    )
    if split:
        query = query.where(Image.split == split)
    if labeled is True:
        query = query.where(Label.image_id.is_not(None))
    elif labeled is False:
        query = query.where(Label.image_id.is_(None))
    if label:
        query = query.where(Label.label == label)
    if ids is not None:
        query = query.where(Image.id.in_([int(i) for i in ids]))
    if limit:
        query = query.limit(limit)
    return [
        FaceRow(
            r.id,
            r.path,
            r.crop_path,
            (r.face_x, r.face_y, r.face_w, r.face_h) if r.face_w is not None else None,
            r.split,
            r.label,
            r.source,
            r.face_angle,
        )
        for r in session.execute(query)
    ]


def latest_finished_run_id(session: Session) -> int | None:
    """The run whose predictions the studio shows by default: the newest finished one."""
    return session.scalar(select(func.max(Run.id)).where(Run.status == RUN_FINISHED))


class RunNotFoundError(ValueError):
    """A run asked for that does not exist, or no finished run where one is needed."""


def resolve_run_id(session: Session, run_id: int | None) -> int:
    """`run_id` checked to exist, or (None) the newest finished run."""
    if run_id is None:
        run_id = latest_finished_run_id(session)
        if run_id is None:
            raise RunNotFoundError("no finished run in this project yet; train one with: python main.py train PROJECT")
    else:
        run = session.get(Run, run_id)
        if run is None:
            raise RunNotFoundError(f"there is no run {run_id} in this project")
        if run.predictions_pruned_at is not None:
            raise RunNotFoundError(pruned_run_message(run))
    return run_id


def local_midnight(now: datetime | None = None) -> datetime:
    """The start of today in the machine's local time zone (timezone-aware)."""
    local = (now or datetime.now(UTC)).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def labeled_today(session: Session, now: datetime | None = None) -> int:
    """How many faces annotators gave a label since local midnight, a first label or another one
    (undone steps and cleared labels left out; a face labeled twice counts once): the studio's
    status bar count. Every annotator's label change is a Correction row, first labels too."""
    since = local_midnight(now)
    return (
        session.scalar(
            select(func.count(func.distinct(Correction.image_id))).where(
                Correction.created_at >= since, Correction.undone_at.is_(None), Correction.new_label.is_not(None)
            )
        )
        or 0
    )
