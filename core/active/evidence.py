"""What the studio's detail panel shows about one face: the run's evidence for it.

`face_evidence` reads one face's prediction (each level's probabilities, the fused ones, the
pseudo-label), its current label with where that came from, the annotators' votes on it (one
lookup on the votes table's key), and the run's class thresholds.
`LabeledNeighbours` finds the labeled (train) faces nearest to a face in the run's embedding space (the
instance level's evidence): the labeled faces' stored embeddings are kept as one normalised
matrix per run, so each lookup is one matrix-vector product; when labels change, only the
embeddings of newly labeled faces are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.active.data import LEVELS, load_embeddings, load_thresholds
from core.store.models import STATUS_ACTIVE, Image, Label, Prediction
from core.store.prediction_rows import decode_extra, decode_probabilities
from core.team.votes import Vote, disputed_faces, load_votes


@dataclass(frozen=True)
class FaceEvidence:
    face_id: int
    split: str
    label: str | None  # the current label
    label_source: str | None  # "imported" / "annotator"
    annotator: str | None
    labeled_at: datetime | None
    run_id: int | None
    levels: dict[str, np.ndarray | None]  # semantic/text/instance -> (C,) or None: the run did not produce it
    fused: np.ndarray | None  # (C,), None when the run has no prediction for the face
    pseudo_label: str | None
    confidence: float | None
    passed_threshold: bool | None
    thresholds: np.ndarray | None  # (C,) the run's last logged class thresholds
    extra: dict | None = None  # the algorithm's own per-face output (LEAF: its positive set)
    votes: tuple[Vote, ...] = ()  # each annotator's current vote, by annotator (core/team/votes.py)

    @property
    def disputed(self) -> bool:
        """The votes disagree and no adjudication settled them (the adjudication queue's faces)."""
        return self.face_id in disputed_faces(self.votes)


def face_evidence(
    session: Session, run_id: int | None, face_id: int, thresholds: np.ndarray | None = None
) -> FaceEvidence | None:
    """The face's label and the run's prediction for it (None if there is no such face).
    Pass `thresholds` when the caller already holds the run's (they are the same for every face)."""
    face = session.execute(
        select(Image.id, Image.split, Label.label, Label.source, Label.annotator, Label.updated_at)
        .outerjoin(Label, Label.image_id == Image.id)
        .where(Image.id == int(face_id))
    ).first()
    if face is None:
        return None
    prediction = None
    if run_id is not None:
        prediction = session.execute(
            select(
                Prediction.p_semantic,
                Prediction.p_text,
                Prediction.p_instance,
                Prediction.p_fused,
                Prediction.pseudo_label,
                Prediction.confidence,
                Prediction.passed_threshold,
                Prediction.extra,
            ).where(Prediction.run_id == run_id, Prediction.image_id == int(face_id))
        ).first()
        if prediction is not None and thresholds is None:
            thresholds = load_thresholds(session, run_id)
    labeled = (face.id, face.split, face.label, face.source, face.annotator, face.updated_at, run_id)
    votes = tuple(load_votes(session, [face.id]))
    if prediction is None:
        no_levels: dict[str, np.ndarray | None] = {level: None for level in LEVELS}
        return FaceEvidence(*labeled, no_levels, None, None, None, None, None, votes=votes)
    levels = dict(zip(LEVELS, (decode_probabilities(p) for p in prediction[:3])))
    return FaceEvidence(
        *labeled,
        levels,
        decode_probabilities(prediction.p_fused),
        prediction.pseudo_label,
        float(prediction.confidence),
        bool(prediction.passed_threshold),
        thresholds,
        decode_extra(prediction.extra),
        votes,
    )


@dataclass(frozen=True)
class Neighbour:
    face_id: int
    label: str
    similarity: float  # cosine similarity of the two faces' run embeddings


class LabeledNeighbours:
    """The labeled faces of a project as a matrix of one run's embeddings, for nearest-neighbour
    lookups. Label changes are applied face by face (`labels_changed`), so a correction costs one
    small query, not a re-read of every label. Not thread-safe: one owner at a time (build it in
    a worker, then hand it over)."""

    def __init__(self, run_id: int, split: str | None = "train"):
        self.run_id = run_id
        self.split = split  # whose labels count (None: every split); the memory bank holds train faces
        self._vectors: dict[int, np.ndarray | None] = {}  # face id -> normalised embedding (None: none stored)
        self._row: dict[int, int] = {}  # labeled face id -> its row in the matrix
        self._matrix = np.zeros((0, 0), dtype=np.float32)  # the first `_count` rows are in use
        self._ids = np.zeros(0, dtype=np.int64)
        self._names: list[str] = []
        self._count = 0
        self._pending: set[int] | None = None  # faces whose labels changed; None: read every label

    @property
    def labeled_count(self) -> int:
        return self._count

    def refresh_labels(self, session: Session) -> None:
        """Read every current label and the embeddings of the labeled faces (the first build)."""
        query = (
            select(Label.image_id, Label.label)
            .join(Image, Image.id == Label.image_id)
            .where(Image.status == STATUS_ACTIVE)
        )
        if self.split is not None:
            query = query.where(Image.split == self.split)
        labels = dict(session.execute(query).all())
        self._load_vectors(session, [f for f in labels if f not in self._vectors])
        self._row.clear()
        self._count = 0
        self._names = []
        for face_id in sorted(labels):
            self._put(face_id, labels[face_id])
        self._pending = set()

    def labels_changed(self, face_ids) -> None:
        """These faces' labels changed: they are re-read at the next lookup."""
        if self._pending is not None:
            self._pending.update(int(f) for f in face_ids)

    def _apply_pending(self, session: Session, changed: set[int]) -> None:
        ids = sorted(changed)
        self._pending = set()
        if not ids:
            return
        query = (
            select(Image.id, Label.label)
            .outerjoin(Label, Label.image_id == Image.id)
            .where(Image.id.in_(ids), Image.status == STATUS_ACTIVE)
        )
        if self.split is not None:
            query = query.where(Image.split == self.split)
        now = dict(session.execute(query).all())
        self._load_vectors(session, [f for f in ids if now.get(f) is not None and f not in self._vectors])
        for face_id in ids:
            if now.get(face_id) is None:
                self._remove(face_id)
            else:
                self._put(face_id, now[face_id])

    def _put(self, face_id: int, label: str) -> None:
        vector = self._vectors.get(face_id)
        if vector is None:
            return  # the run has no embedding for it: it cannot be a neighbour
        row = self._row.get(face_id)
        if row is not None:
            self._names[row] = label
            return
        if self._count == len(self._matrix):  # grow by doubling: appends stay cheap on average
            grown = np.zeros((max(64, 2 * len(self._matrix)), len(vector)), dtype=np.float32)
            if self._count:
                grown[: self._count] = self._matrix[: self._count]
            ids = np.zeros(len(grown), dtype=np.int64)
            ids[: self._count] = self._ids[: self._count]
            self._matrix, self._ids = grown, ids
        self._matrix[self._count] = vector
        self._ids[self._count] = face_id
        self._names.append(label)
        self._row[face_id] = self._count
        self._count += 1

    def _remove(self, face_id: int) -> None:
        row = self._row.pop(face_id, None)
        if row is None:
            return
        last = self._count - 1
        if row != last:  # the last row fills the gap
            self._matrix[row] = self._matrix[last]
            self._ids[row] = self._ids[last]
            self._names[row] = self._names[last]
            self._row[int(self._ids[row])] = row
        self._names.pop()
        self._count -= 1

    def _load_vectors(self, session: Session, face_ids: list[int]) -> None:
        if not face_ids:
            return
        found, vectors = load_embeddings(session, self.run_id, np.asarray(face_ids, dtype=np.int64))
        rows = iter(_normalised(vectors)) if found.any() else iter(())
        for face_id, has in zip(face_ids, found):
            self._vectors[int(face_id)] = next(rows) if has else None

    def vector_of(self, session: Session, face_id: int) -> np.ndarray | None:
        if face_id not in self._vectors:
            self._load_vectors(session, [face_id])
        return self._vectors[face_id]

    def nearest(self, session: Session, face_id: int, k: int = 6) -> list[Neighbour]:
        """The k labeled faces most similar to `face_id` (the face itself left out), best first;
        [] when the run stored no embedding for it."""
        if self._pending is None:
            self.refresh_labels(session)
        elif self._pending:
            self._apply_pending(session, self._pending)
        query = self.vector_of(session, int(face_id))
        if query is None or not self._count:
            return []
        ids = self._ids[: self._count]
        similarity = self._matrix[: self._count] @ query
        similarity[ids == int(face_id)] = -np.inf
        count = min(k, int(np.isfinite(similarity).sum()))
        if count <= 0:
            return []
        best = np.argpartition(-similarity, count - 1)[:count]
        best = best[np.lexsort((ids[best], -similarity[best]))]  # ties in face id order
        return [Neighbour(int(ids[i]), self._names[i], float(similarity[i])) for i in best]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
