"""A project's agreement: its current votes and labels read from the store, handed to
core/team/agreement.py. The `agreement` command and the studio read it the same way.

Faces count while active (as in `stats`): a face excluded or whose file is gone keeps its votes
in the store but leaves the figures.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.models import STATUS_ACTIVE, Image, Label
from core.team.agreement import AgreementReport, compute_agreement, faces_voted_by, vote_entropy
from core.team.votes import Vote, load_votes

ALL_SPLITS = "all"


class UnknownAnnotatorError(ValueError):
    def __init__(self, name: str, known: list[str]):
        listed = ", ".join(known) if known else "nobody has voted yet"
        super().__init__(f"annotator {name!r} has no vote in this project (annotators: {listed})")


def project_agreement(
    session: Session, *, split: str = ALL_SPLITS, annotator: str | None = None, count_adjudicated: bool = False
) -> AgreementReport:
    """The agreement of the votes on the split's active faces; with `annotator`, on the faces
    that annotator voted on (everyone's votes on them, so it shows whom they agree with)."""
    votes = split_votes(session, split)
    if annotator is not None:
        theirs = faces_voted_by(votes, annotator)
        if not theirs:
            raise UnknownAnnotatorError(annotator, sorted({v.annotator for v in votes}))
        votes = [v for v in votes if v.face_id in theirs]
    return compute_agreement(
        votes, consensus_labels(session, {v.face_id for v in votes}), count_adjudicated=count_adjudicated
    )


def project_vote_entropy(session: Session, split: str = ALL_SPLITS) -> dict[int, float]:
    """Each active face with two or more votes for a class: its vote entropy in bits."""
    return vote_entropy(split_votes(session, split))


def split_votes(session: Session, split: str = ALL_SPLITS) -> list[Vote]:
    faces = select(Image.id).where(Image.status == STATUS_ACTIVE)
    if split != ALL_SPLITS:
        faces = faces.where(Image.split == split)
    wanted = set(session.scalars(faces))
    return [v for v in load_votes(session) if v.face_id in wanted]


def consensus_labels(session: Session, face_ids: set[int]) -> dict[int, str]:
    """The label row of each of these faces that has one: the consensus of its votes."""
    return {face: label for face, label in session.execute(select(Label.image_id, Label.label)) if face in face_ids}
