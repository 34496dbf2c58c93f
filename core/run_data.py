"""A run's results read back as numpy arrays for the studio's views: the run history, metric
curves, and the embedding map (2-D positions, labels, pseudo-labels, confidence, level
probabilities and their disagreement).

Fast for 30,000 faces: one bulk select per question, no ORM objects per row; the probability
lists are parsed in bulk by the review queue's loader (one json.loads per column).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from core.active.data import load_run_predictions
from core.active.scores import js_divergence
from core.classes import class_names
from core.store.models import (
    RUN_FINISHED,
    Label,
    Metric,
    Prediction,
    Projection,
    Run,
)
from core.store.queries import latest_finished_run_id

MAP_METHODS = ("umap", "pca")  # in order of preference


# -- run history --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary:
    id: int
    algorithm: str
    encoder: str
    mode: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    val_accuracy: float | None  # the classifier's, at the run's last step
    val_fused_accuracy: float | None
    error: str | None
    soft_labels: bool = False  # trained on the annotators' vote shares (its recorded settings)

    def duration_s(self, now: datetime | None = None) -> float | None:
        """Seconds from start to finish (to `now` while running)."""
        if self.started_at is None:
            return None
        end = self.finished_at or now or datetime.now(UTC)
        return max(0.0, (end - self.started_at).total_seconds())


def run_summaries(session: Session) -> list[RunSummary]:
    """Every run, newest first, with its last validation accuracies."""
    final: dict[int, dict[str, float]] = {}
    for run_id, name, value in session.execute(
        select(Metric.run_id, Metric.name, Metric.value)
        .where(Metric.name.in_(("val_accuracy", "val_fused_accuracy")))
        .order_by(Metric.run_id, Metric.step, Metric.id)
    ):
        final.setdefault(run_id, {})[name] = value  # later steps overwrite earlier ones
    rows = session.execute(
        select(
            Run.id,
            Run.algorithm,
            Run.encoder,
            Run.mode,
            Run.status,
            Run.started_at,
            Run.created_at,
            Run.finished_at,
            Run.error,
            Run.config,
        ).order_by(Run.id.desc())
    )
    return [
        RunSummary(
            r.id,
            r.algorithm,
            r.encoder,
            r.mode,
            r.status,
            r.started_at or r.created_at,
            r.finished_at,
            final.get(r.id, {}).get("val_accuracy"),
            final.get(r.id, {}).get("val_fused_accuracy"),
            r.error.strip().splitlines()[0] if r.error else None,
            bool((r.config or {}).get("soft_labels", False)),
        )
        for r in rows
    ]


def latest_run_with_map(session: Session) -> int | None:
    """The newest finished run that has a 2-D map, else the newest finished run, else None."""
    with_map = exists().where(Projection.run_id == Run.id)
    return session.scalar(
        select(func.max(Run.id)).where(Run.status == RUN_FINISHED, with_map)
    ) or latest_finished_run_id(session)


def metric_series(session: Session, run_id: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (steps, values) of a run, in step order; a step written twice keeps its last value."""
    series: dict[str, dict[int, float]] = {}
    for step, name, value in session.execute(
        select(Metric.step, Metric.name, Metric.value)
        .where(Metric.run_id == run_id)
        .order_by(Metric.name, Metric.step, Metric.id)
    ):
        series.setdefault(name, {})[step] = value
    return {
        name: (np.fromiter(points.keys(), np.int64, len(points)), np.fromiter(points.values(), np.float64, len(points)))
        for name, points in series.items()
    }


# -- the embedding map --------------------------------------------------------------------------
@dataclass
class RunMap:
    """One point per face of a run's map; class arrays hold indexes into class_names(), -1 = none."""

    run_id: int
    method: str  # the projection shown: "umap" or "pca"
    methods: tuple[str, ...]  # every projection the run has
    ids: np.ndarray  # int64 face ids, ascending
    xy: np.ndarray  # float32 (n, 2)
    labels: np.ndarray  # int16: the face's current label
    pseudo: np.ndarray  # int16: the run's pseudo-label (argmax of the fused probabilities)
    confidence: np.ndarray  # float32: max fused probability
    levels: dict[str, np.ndarray] = field(default_factory=dict)  # level name -> float32 (n, C)
    disagreement: np.ndarray | None = None  # float32: JS divergence between the levels (bits)
    # Level arrays have NaN rows for faces that lack the level.

    def __len__(self) -> int:
        return len(self.ids)


def prediction_count(session: Session, run_id: int) -> int:
    """How many faces a run predicted (cheap: the views decide from it how to load the run)."""
    return session.scalar(select(func.count()).select_from(Prediction).where(Prediction.run_id == run_id)) or 0


def map_methods(session: Session, run_id: int) -> tuple[str, ...]:
    found = set(session.scalars(select(Projection.method).where(Projection.run_id == run_id).distinct()))
    return tuple(m for m in MAP_METHODS if m in found) + tuple(sorted(found - set(MAP_METHODS)))


def load_run_map(session: Session, run_id: int, method: str | None = None) -> RunMap | None:
    """The run's map (UMAP when it has one, else PCA), or None when the run has no projection.

    The predictions come from the review queue's bulk loader (core/active/data.py), so the map
    and the queue read a run the same way; only the 2-D positions are read here."""
    methods = map_methods(session, run_id)
    if not methods:
        return None
    method = method if method in methods else methods[0]
    coords = session.execute(
        select(Projection.image_id, Projection.x, Projection.y)
        .where(Projection.run_id == run_id, Projection.method == method)
        .order_by(Projection.image_id)
    ).all()
    ids = np.fromiter((c[0] for c in coords), np.int64, len(coords))
    xy = np.array([(c[1], c[2]) for c in coords], dtype=np.float32).reshape(-1, 2)
    predictions = load_run_predictions(session, run_id, split=None)  # active faces, in id order
    keep = np.isin(ids, predictions.face_ids)  # faces excluded since the run leave the map
    ids, xy = ids[keep], xy[keep]
    rows = np.searchsorted(predictions.face_ids, ids)
    index = {name: i for i, name in enumerate(class_names())}
    levels = {name: probs[rows].astype(np.float32) for name, probs in predictions.levels.items()}
    return RunMap(
        run_id=run_id,
        method=method,
        methods=methods,
        ids=ids,
        xy=xy,
        labels=np.array([index.get(name, -1) for name in predictions.labels[rows]], dtype=np.int16),
        pseudo=predictions.predicted[rows].astype(np.int16),
        confidence=predictions.confidence[rows].astype(np.float32),
        levels=levels,
        disagreement=level_disagreement(levels),
    )


def current_labels(session: Session, face_ids: np.ndarray) -> np.ndarray:
    """The current label of each given face as a class index (-1: unlabeled), in the order
    given: after a correction the map recolours from this one query, not a reload of the run."""
    index = {name: i for i, name in enumerate(class_names())}
    rows = session.execute(select(Label.image_id, Label.label).order_by(Label.image_id)).all()
    labeled = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    classes = np.array([index.get(r[1], -1) for r in rows], dtype=np.int16)
    face_ids = np.asarray(face_ids, dtype=np.int64)
    out = np.full(len(face_ids), -1, dtype=np.int16)
    if len(labeled):
        at = np.minimum(np.searchsorted(labeled, face_ids), len(labeled) - 1)
        found = labeled[at] == face_ids
        out[found] = classes[at[found]]
    return out


def level_disagreement(levels: dict[str, np.ndarray]) -> np.ndarray | None:
    """Jensen-Shannon divergence (bits) between the levels a run produced, per face (NaN for a
    face with fewer than two levels), or None when the run has fewer than two levels."""
    if len(levels) < 2:
        return None
    return js_divergence(list(levels.values())).astype(np.float32)
