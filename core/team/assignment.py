"""Which faces an annotator is asked to label: the team's overlap setting.

Agreement can only be measured on faces several annotators labeled. A share of the faces (the
overlap, e.g. 10%) is therefore given to k annotators (e.g. 3); every other face needs one vote.
An annotator's queue ("to vote") holds the faces they have not voted on that still need a vote:
unlabeled ones, and overlap faces with fewer than k votes that no import labeled. Which faces are
in the overlap is a fixed function of the face id (a hash), so every annotator's process agrees
on it without a table, and raising the share only adds faces.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from core.store.models import SOURCE_IMPORTED, STATUS_ACTIVE, Image, Label, Meta
from core.team.votes import disputed_faces, load_votes, vote_counts, voted_faces

OVERLAP_SHARE_KEY = "team.overlap_share"
OVERLAP_VOTES_KEY = "team.overlap_votes"
MAX_VOTES = 20


class TeamSettingsError(ValueError):
    """A team setting out of range; the message says which and why."""


@dataclass(frozen=True)
class TeamSettings:
    overlap_share: float = 0.0  # share of the faces that go to `overlap_votes` annotators
    overlap_votes: int = 3

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap_share <= 1.0:
            raise TeamSettingsError(f"the overlap share must be between 0 and 1 (0.1 = 10%), not {self.overlap_share}")
        if not 2 <= self.overlap_votes <= MAX_VOTES:
            raise TeamSettingsError(
                f"overlap faces need between 2 and {MAX_VOTES} annotators' votes, not {self.overlap_votes}"
            )

    def describe(self) -> str:
        if self.overlap_share == 0:
            return "no overlap: each face needs one annotator's vote"
        return (
            f"{self.overlap_share:.0%} of the faces go to {self.overlap_votes} annotators each; the rest need one vote"
        )


def read_settings(session: Session) -> TeamSettings:
    stored = dict(
        session.execute(select(Meta.key, Meta.value).where(Meta.key.in_([OVERLAP_SHARE_KEY, OVERLAP_VOTES_KEY]))).all()
    )
    return TeamSettings(
        float(stored.get(OVERLAP_SHARE_KEY, 0.0)), int(stored.get(OVERLAP_VOTES_KEY, TeamSettings.overlap_votes))
    )


def write_settings(session: Session, settings: TeamSettings) -> None:
    session.execute(delete(Meta).where(Meta.key.in_([OVERLAP_SHARE_KEY, OVERLAP_VOTES_KEY])))
    session.execute(
        insert(Meta),
        [
            {"key": OVERLAP_SHARE_KEY, "value": repr(float(settings.overlap_share))},
            {"key": OVERLAP_VOTES_KEY, "value": str(int(settings.overlap_votes))},
        ],
    )


def in_overlap(face_ids: np.ndarray, share: float) -> np.ndarray:
    """Whether each face is in the overlap: its id's hash, as a number in [0, 1), is below `share`."""
    if share <= 0:
        return np.zeros(len(face_ids), dtype=bool)
    draws = np.fromiter((_unit_hash(int(f)) for f in face_ids), dtype=np.float64, count=len(face_ids))
    return draws < share


def to_vote_mask(
    session: Session,
    annotator: str,
    face_ids: np.ndarray,
    labels: np.ndarray,
    label_sources: np.ndarray,
    *,
    only_these: bool = False,
) -> np.ndarray:
    """Over these faces (with their current labels and label sources): those this annotator is
    asked to vote on (see the module's rule). `only_these`: read the votes of these faces alone
    (a few faces), not every vote (a queue over the whole run)."""
    settings = read_settings(session)
    among = [int(f) for f in face_ids] if only_these else None
    mine = voted_faces(session, annotator, among)
    counts = vote_counts(session, among)
    not_mine = np.fromiter((int(f) not in mine for f in face_ids), dtype=bool, count=len(face_ids))
    unlabeled = labels == None  # noqa: E711 (element-wise over an object array)
    votes = np.fromiter((counts.get(int(f), 0) for f in face_ids), dtype=np.int64, count=len(face_ids))
    wanted = in_overlap(face_ids, settings.overlap_share) & (label_sources != SOURCE_IMPORTED)
    wanted &= votes < settings.overlap_votes
    return not_mine & (unlabeled | wanted)


def still_to_vote(session: Session, annotator: str, face_ids: Iterable[int]) -> set[int]:
    """Of these faces, those `annotator` is still asked to vote on, read now: the studio asks
    after a teammate's votes, to skip the faces they settled."""
    ids = sorted({int(f) for f in face_ids})
    if not ids:
        return set()
    rows = session.execute(
        select(Image.id, Label.label, Label.source)
        .outerjoin(Label, Label.image_id == Image.id)
        .where(Image.id.in_(ids))
    ).all()
    found = np.array([r.id for r in rows], dtype=np.int64)
    labels = np.array([r.label for r in rows], dtype=object)
    sources = np.array([r.source for r in rows], dtype=object)
    mask = to_vote_mask(session, annotator, found, labels, sources, only_these=True)
    return {int(f) for f in found[mask]}


def team_order(face_ids: np.ndarray, annotator: str, block: int) -> np.ndarray:
    """Positions that reorder a ranked to-vote queue for one annotator: each run of `block`
    faces keeps its place in the ranking but is taken in an order of the annotator's own (a hash
    of name and face id). Teammates who start on the same queue at once then rarely open the same
    face first, and a face a teammate settled meanwhile is skipped (the studio asks
    `still_to_vote`) instead of being labeled twice."""
    salt = annotator.encode()
    keys = np.array(
        [
            int.from_bytes(hashlib.blake2b(salt + int(f).to_bytes(8, "little"), digest_size=8).digest(), "little")
            for f in face_ids
        ],
        dtype=np.uint64,
    )
    blocks = np.arange(len(face_ids)) // max(1, block)
    return np.lexsort((keys, blocks))


def team_status(session: Session) -> dict:
    """The team's settings and progress (the `team` command's JSON): votes per annotator, faces
    with votes, how far the overlap is, the disputed and adjudicated faces."""
    settings = read_settings(session)
    votes = load_votes(session)
    counts = Counter(v.face_id for v in votes)
    rows = session.execute(
        select(Image.id, Label.source)
        .outerjoin(Label, Label.image_id == Image.id)
        .where(Image.status == STATUS_ACTIVE, Image.split == "train")
        .order_by(Image.id)
    ).all()
    ids = np.array([r.id for r in rows], dtype=np.int64)
    open_to_votes = np.array([r.source != SOURCE_IMPORTED for r in rows], dtype=bool)
    overlap = ids[in_overlap(ids, settings.overlap_share) & open_to_votes]
    return {
        "overlap_share": settings.overlap_share,
        "overlap_votes": settings.overlap_votes,
        "settings": settings.describe(),
        "annotators": dict(sorted(Counter(v.annotator for v in votes).items())),
        "votes": len(votes),
        "faces_with_votes": len(counts),
        "faces_with_2plus_votes": sum(1 for n in counts.values() if n >= 2),
        "overlap_faces": len(overlap),
        "overlap_faces_complete": sum(1 for f in overlap if counts.get(int(f), 0) >= settings.overlap_votes),
        "disputed_faces": len(disputed_faces(votes)),
        "adjudicated_faces": len({v.face_id for v in votes if v.adjudicated}),
    }


def _unit_hash(face_id: int) -> float:
    digest = hashlib.blake2b(face_id.to_bytes(8, "little", signed=True), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64
