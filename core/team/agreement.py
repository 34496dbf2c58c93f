"""Inter-annotator agreement: how far the team's votes agree, per class and per annotator.

Input: the current votes (core/team/votes.py) and each face's consensus, its label row. What
counts as a rating for agreement:
- a vote for a class. A "no label" vote (label None) says nothing about which class the face
  shows, so it is left out (and counted in `no_label_votes`);
- not an adjudication, by default: the adjudicator's final word settles a disagreement after
  seeing the votes, so counting it as one more independent rating would inflate agreement on
  exactly the faces that were disputed. `count_adjudicated=True` counts it like any vote.

Against the consensus: the consensus is decided from the votes, the annotator's own included, so
it flatters anyone whose vote is the only one on a face. `accuracy` and the confusion matrix
leave those faces out (`sole_votes` says how many); `accuracy_with_sole_votes` keeps them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from core.classes import class_names
from core.team.reliability import (
    Undefined,
    class_vs_rest_alpha,
    cohen_kappa,
    entropy_bits,
    fleiss_kappa,
    nominal_alpha,
)

TOP_PAIRS = 10


class VoteLike(Protocol):
    """What agreement reads of a vote (core.team.votes.Vote has it)."""

    @property
    def face_id(self) -> int: ...
    @property
    def annotator(self) -> str: ...
    @property
    def label(self) -> str | None: ...
    @property
    def adjudicated(self) -> bool: ...


@dataclass(frozen=True)
class ClassAgreement:
    name: str
    votes: int  # ratings for this class
    share: float | None  # of all ratings
    consensus_faces: int  # voted faces whose label is this class
    fleiss_kappa: float | None  # Fleiss' per-category kappa
    alpha_vs_rest: float | None  # Krippendorff's alpha of "this class or another"
    note: str | None = None  # why a value is None


@dataclass(frozen=True)
class AnnotatorAgreement:
    name: str
    faces_voted: int  # faces this annotator rated
    faces_with_consensus: int  # of those, faces with a label
    faces_compared: int  # of those, faces someone else voted on too
    sole_votes: int  # faces_with_consensus - faces_compared: their vote was the only one
    agreed: int  # of faces_compared, their class is the label
    accuracy: float | None  # agreed / faces_compared
    accuracy_with_sole_votes: float | None  # over faces_with_consensus
    cohen_kappa: float | None  # against the consensus, over faces_compared
    confusion: list[list[int]]  # rows: their vote, columns: the consensus (report's class order)
    adjudicated: int  # their adjudications (not ratings unless count_adjudicated)
    no_label_votes: int


@dataclass(frozen=True)
class ConfusedPair:
    classes: tuple[str, str]
    count: int  # pairs of votes on one face, one for each class
    share: float  # of all pairs of votes that differ


@dataclass(frozen=True)
class AgreementReport:
    classes: list[str]
    count_adjudicated: bool
    faces_with_votes: int  # faces with at least one rating
    faces_with_2plus_votes: int  # the faces agreement is measured on
    faces_disagreeing: int  # of those, faces whose ratings are not all one class
    votes: int  # ratings
    adjudicated_votes: int
    no_label_votes: int
    annotator_count: int
    mean_votes_per_face: float | None
    mean_vote_entropy_bits: float | None  # over faces with 2+ ratings
    krippendorff_alpha: float | None
    fleiss_kappa: float | None
    per_class: list[ClassAgreement]
    annotators: list[AnnotatorAgreement]
    confused_pairs: list[ConfusedPair]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["confused_pairs"] = [
            {"classes": list(pair.classes), "count": pair.count, "share": pair.share} for pair in self.confused_pairs
        ]
        return data


@dataclass(frozen=True)
class _Tally:
    """The ratings as arrays: one row per rated face, one column per class."""

    face_ids: np.ndarray  # (F,) face ids, ascending
    counts: np.ndarray  # (F, K) ratings per class
    vote_face: np.ndarray  # (V,) row of each rating's face
    vote_class: np.ndarray  # (V,) column of each rating's class
    vote_annotator: list[str]  # (V,)
    votes_on_face: dict[int, int]  # face id -> how many votes of any kind it has


def compute_agreement(
    votes: Iterable[VoteLike],
    consensus: Mapping[int, str],
    *,
    classes: Sequence[str] | None = None,
    count_adjudicated: bool = False,
) -> AgreementReport:
    """The agreement report of these votes; `consensus`: each face's label (faces without one absent)."""
    names = list(classes) if classes is not None else class_names()
    votes = list(votes)
    tally = _tally(votes, names, count_adjudicated)
    notes: list[str] = []
    counts = tally.counts
    rated = counts.sum(axis=1)
    two_plus = rated >= 2

    alpha = nominal_alpha(counts)
    kappa = fleiss_kappa(counts)
    for value in (alpha, kappa.overall):
        if isinstance(value, Undefined) and value.reason not in notes:
            notes.append(value.reason)
    adjudicated = sum(1 for v in votes if v.adjudicated and v.label is not None)
    no_label = sum(1 for v in votes if v.label is None)
    if not votes:
        notes.insert(0, "no votes yet: faces get votes when annotators label them")
    if no_label:
        notes.append(f"{no_label} 'no label' vote(s) left out: they name no class")
    if adjudicated and not count_adjudicated:
        notes.append(f"{adjudicated} adjudication(s) not counted as ratings: they are the final word, not a vote")

    entropies = entropy_bits(counts[two_plus])
    total = int(rated.sum())
    return AgreementReport(
        classes=names,
        count_adjudicated=count_adjudicated,
        faces_with_votes=int(len(tally.face_ids)),
        faces_with_2plus_votes=int(two_plus.sum()),
        faces_disagreeing=int(((counts[two_plus] > 0).sum(axis=1) > 1).sum()),
        votes=total,
        adjudicated_votes=adjudicated,
        no_label_votes=no_label,
        # Those whose votes are counted above ("8 votes from 2 annotators"), not an adjudicator's.
        annotator_count=len(
            {v.annotator for v in votes if v.label is not None and (count_adjudicated or not v.adjudicated)}
        ),
        mean_votes_per_face=total / len(tally.face_ids) if len(tally.face_ids) else None,
        mean_vote_entropy_bits=float(entropies.mean()) if len(entropies) else None,
        krippendorff_alpha=_value(alpha),
        fleiss_kappa=_value(kappa.overall),
        per_class=_per_class(tally, names, consensus, kappa.per_category),
        annotators=_per_annotator(votes, tally, names, consensus),
        confused_pairs=_confused_pairs(counts, names),
        notes=notes,
    )


def vote_entropy(
    votes: Iterable[VoteLike], *, classes: Sequence[str] | None = None, count_adjudicated: bool = False
) -> dict[int, float]:
    """Each face with two or more ratings: the entropy of its votes in bits (0: all agree)."""
    tally = _tally(list(votes), list(classes) if classes is not None else class_names(), count_adjudicated)
    two_plus = tally.counts.sum(axis=1) >= 2
    entropies = entropy_bits(tally.counts[two_plus])
    return {int(f): float(e) for f, e in zip(tally.face_ids[two_plus], entropies, strict=True)}


def disagreeing_faces(
    votes: Iterable[VoteLike], *, classes: Sequence[str] | None = None, count_adjudicated: bool = False
) -> list[int]:
    """The faces whose ratings are not all for one class, ascending."""
    return [
        face
        for face, bits in vote_entropy(votes, classes=classes, count_adjudicated=count_adjudicated).items()
        if bits > 0
    ]


def faces_voted_by(votes: Iterable[VoteLike], annotator: str) -> set[int]:
    return {v.face_id for v in votes if v.annotator == annotator}


def _tally(votes: list[VoteLike], names: list[str], count_adjudicated: bool) -> _Tally:
    column = {name: i for i, name in enumerate(names)}
    ratings = [v for v in votes if v.label is not None and (count_adjudicated or not v.adjudicated)]
    for vote in ratings:
        if vote.label not in column:
            raise ValueError(
                f"vote of {vote.annotator!r} on face {vote.face_id}: {vote.label!r} is not a class "
                f"(known: {', '.join(names)})"
            )
    face_ids = np.array(sorted({v.face_id for v in ratings}), dtype=np.int64)
    row = {int(f): i for i, f in enumerate(face_ids)}
    vote_face = np.array([row[v.face_id] for v in ratings], dtype=np.int64)
    vote_class = np.array([column[v.label] for v in ratings if v.label is not None], dtype=np.int64)
    counts = np.zeros((len(face_ids), len(names)), dtype=np.int64)
    np.add.at(counts, (vote_face, vote_class), 1)
    every_vote = Counter(v.face_id for v in votes)
    return _Tally(face_ids, counts, vote_face, vote_class, [v.annotator for v in ratings], dict(every_vote))


def _per_class(
    tally: _Tally, names: list[str], consensus: Mapping[int, str], kappas: list[float | Undefined]
) -> list[ClassAgreement]:
    totals = tally.counts.sum(axis=0)
    grand = int(totals.sum())
    labels = [_consensus_class(consensus, int(f), names) for f in tally.face_ids]
    result = []
    for j, name in enumerate(names):
        alpha = class_vs_rest_alpha(tally.counts, j)
        reasons = [v.reason for v in (kappas[j], alpha) if isinstance(v, Undefined)]
        result.append(
            ClassAgreement(
                name=name,
                votes=int(totals[j]),
                share=int(totals[j]) / grand if grand else None,
                consensus_faces=sum(1 for label in labels if label == j),
                fleiss_kappa=_value(kappas[j]),
                alpha_vs_rest=_value(alpha),
                note="; ".join(dict.fromkeys(reasons)) or None,
            )
        )
    return result


def _per_annotator(
    votes: list[VoteLike], tally: _Tally, names: list[str], consensus: Mapping[int, str]
) -> list[AnnotatorAgreement]:
    k = len(names)
    confusion: dict[str, np.ndarray] = {}
    voted: dict[str, int] = {}
    with_consensus: dict[str, int] = {}
    sole: dict[str, int] = {}
    sole_agreed: dict[str, int] = {}
    for face_row, their, annotator in zip(tally.vote_face, tally.vote_class, tally.vote_annotator, strict=True):
        face_id = int(tally.face_ids[face_row])
        voted[annotator] = voted.get(annotator, 0) + 1
        label = _consensus_class(consensus, face_id, names)
        if label is None:
            continue
        with_consensus[annotator] = with_consensus.get(annotator, 0) + 1
        if tally.votes_on_face[face_id] == 1:  # only their vote: it decided the label by itself
            sole[annotator] = sole.get(annotator, 0) + 1
            sole_agreed[annotator] = sole_agreed.get(annotator, 0) + int(label == their)
            continue
        matrix = confusion.setdefault(annotator, np.zeros((k, k), dtype=np.int64))
        matrix[their, label] += 1
    adjudications = Counter(v.annotator for v in votes if v.adjudicated and v.label is not None)
    no_label = Counter(v.annotator for v in votes if v.label is None)
    result = []
    people = sorted({v.annotator for v in votes})
    for name in people:
        matrix = confusion.get(name, np.zeros((k, k), dtype=np.int64))
        compared = int(matrix.sum())
        agreed = int(np.trace(matrix))
        known = with_consensus.get(name, 0)
        result.append(
            AnnotatorAgreement(
                name=name,
                faces_voted=voted.get(name, 0),
                faces_with_consensus=known,
                faces_compared=compared,
                sole_votes=sole.get(name, 0),
                agreed=agreed,
                accuracy=agreed / compared if compared else None,
                accuracy_with_sole_votes=(agreed + sole_agreed.get(name, 0)) / known if known else None,
                cohen_kappa=_value(cohen_kappa(matrix)),
                confusion=matrix.tolist(),
                adjudicated=adjudications[name],
                no_label_votes=no_label[name],
            )
        )
    return result


def _confused_pairs(counts: np.ndarray, names: list[str]) -> list[ConfusedPair]:
    # Vote pairs on one face: counts[:, a] * counts[:, b] of them pair a with b, i.e. (C^T C)[a, b].
    together = counts.T.astype(np.int64) @ counts.astype(np.int64)
    upper = np.triu_indices(len(names), k=1)
    pairs = together[upper]
    differing = int(pairs.sum())
    order = sorted(range(len(pairs)), key=lambda i: (-int(pairs[i]), i))
    return [
        ConfusedPair((names[upper[0][i]], names[upper[1][i]]), int(pairs[i]), int(pairs[i]) / differing)
        for i in order[:TOP_PAIRS]
        if pairs[i] > 0
    ]


def _consensus_class(consensus: Mapping[int, str], face_id: int, names: list[str]) -> int | None:
    label = consensus.get(face_id)
    if label is None:
        return None
    if label not in names:
        raise ValueError(f"label of face {face_id}: {label!r} is not a class (known: {', '.join(names)})")
    return names.index(label)


def _value(value: float | Undefined) -> float | None:
    return None if isinstance(value, Undefined) else value
