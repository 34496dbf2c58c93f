"""Loading a run's predictions from the store into arrays for the queue strategies.

Probability vectors are JSON lists in the database (core/store/prediction_rows.py); decoding
them one row at a time is what makes a naive load slow, so each column is fetched as raw text
and decoded whole (30,000 faces: a few tens of milliseconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from core.classes import class_names
from core.store.models import STATUS_ACTIVE, Embedding, Image, Label, Metric, Prediction
from core.store.prediction_rows import LEVELS, decode_probability_column, level_column
from core.store.queries import RunNotFoundError, resolve_run_id

_LEVEL_COLUMNS = {level: getattr(Prediction, level_column(level)) for level in LEVELS}
_IN_CHUNK = 900  # ids per IN (...) query: under every SQLite build's bound-parameter limit


class QueueError(ValueError):
    """A queue that cannot be built (no run, no predictions, a strategy's missing input)."""


@dataclass
class RunPredictions:
    """Parallel arrays over the active faces a run predicted, in face id order."""

    run_id: int
    face_ids: np.ndarray  # int64
    splits: np.ndarray  # str (object)
    labels: np.ndarray  # current label name or None (object)
    label_sources: np.ndarray  # "imported" / "annotator" / None (object)
    fused: np.ndarray  # (n, C) float64
    levels: dict[str, np.ndarray]  # level name -> (n, C), NaN rows where a face lacks it; absent levels left out
    predicted: np.ndarray  # int64 class index of the stored pseudo-label
    confidence: np.ndarray  # float64
    passed: np.ndarray  # bool
    thresholds: np.ndarray | None  # (C,) the run's last logged class thresholds, if it logged them

    def __len__(self) -> int:
        return len(self.face_ids)

    def take(self, rows: np.ndarray) -> RunPredictions:
        return RunPredictions(
            self.run_id,
            self.face_ids[rows],
            self.splits[rows],
            self.labels[rows],
            self.label_sources[rows],
            self.fused[rows],
            {k: v[rows] for k, v in self.levels.items()},
            self.predicted[rows],
            self.confidence[rows],
            self.passed[rows],
            self.thresholds,
        )


def resolve_run(session: Session, run_id: int | None) -> int:
    """The given run, checked, or the latest finished one."""
    try:
        return resolve_run_id(session, run_id)
    except RunNotFoundError as exc:
        raise QueueError(str(exc)) from None


def load_run_predictions(session: Session, run_id: int, split: str | None = "train") -> RunPredictions:
    """The run's predictions for the active faces of a split (None: every split)."""
    names = class_names()
    index = {name: i for i, name in enumerate(names)}
    as_text = [cast(column, Text) for column in (Prediction.p_fused, *_LEVEL_COLUMNS.values())]
    query = (
        select(
            Image.id,
            Image.split,
            Label.label,
            Label.source,
            Prediction.pseudo_label,
            Prediction.confidence,
            Prediction.passed_threshold,
            *as_text,
        )
        .join(Prediction, Prediction.image_id == Image.id)
        .outerjoin(Label, Label.image_id == Image.id)
        .where(Prediction.run_id == run_id, Image.status == STATUS_ACTIVE)
        .order_by(Image.id)
    )
    if split is not None:
        query = query.where(Image.split == split)
    rows = session.execute(query).all()
    columns: list[Sequence[Any]] = list(zip(*rows)) if rows else [[] for _ in range(11)]
    width = len(names)
    levels = {}
    for offset, level in enumerate(LEVELS):
        texts = columns[8 + offset]
        if any(t is not None and t != "null" for t in texts):
            levels[level] = decode_probability_column(list(texts), width)
    return RunPredictions(
        run_id=run_id,
        face_ids=np.asarray(columns[0], dtype=np.int64),
        splits=np.asarray(columns[1], dtype=object),
        labels=np.asarray(columns[2], dtype=object),
        label_sources=np.asarray(columns[3], dtype=object),
        fused=decode_probability_column(list(columns[7]), width),
        levels=levels,
        predicted=np.asarray([index[name] for name in columns[4]], dtype=np.int64),
        confidence=np.asarray(columns[5], dtype=np.float64),
        passed=np.asarray(columns[6], dtype=bool),
        thresholds=load_thresholds(session, run_id),
    )


def load_thresholds(session: Session, run_id: int) -> np.ndarray | None:
    """The run's last logged `threshold_<class>` metrics in class order, or None if incomplete."""
    latest: dict[str, float] = {}
    for name, value in session.execute(
        select(Metric.name, Metric.value)
        .where(Metric.run_id == run_id, Metric.name.like("threshold\\_%", escape="\\"))
        .order_by(Metric.step, Metric.id)
    ):
        latest[name[len("threshold_") :]] = value
    names = class_names()
    if not all(name in latest for name in names):
        return None
    return np.array([latest[name] for name in names], dtype=np.float64)


def load_embeddings(session: Session, run_id: int, face_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The run's embeddings of these faces: (found mask over face_ids, (found, dim) float32)."""
    vectors: dict[int, np.ndarray] = {}
    ids = [int(f) for f in face_ids]
    for start in range(0, len(ids), _IN_CHUNK):
        for face_id, blob in session.execute(
            select(Embedding.image_id, Embedding.vector).where(
                Embedding.run_id == run_id, Embedding.image_id.in_(ids[start : start + _IN_CHUNK])
            )
        ):
            if blob:
                vectors[face_id] = np.frombuffer(blob, dtype=np.float32)
    found = np.array([f in vectors for f in ids], dtype=bool)
    if not found.any():
        return found, np.empty((0, 0), dtype=np.float32)
    return found, np.stack([vectors[f] for f in ids if f in vectors])
