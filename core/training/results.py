"""Writing a finished run's results into the store: per-face predictions and embeddings, the
2-D maps, and the final metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import delete, insert

from core.classes import class_names
from core.projection import project_2d
from core.store.models import Embedding, Prediction, Projection
from core.store.prediction_rows import LEVELS, encode_prediction
from core.store.project import Project
from core.training.data import FaceTable
from core.training.events import Event, EventSink
from core.training.inference import Predictions
from core.training.metrics import classification_report
from core.training.settings import TrainSettings

WRITE_BATCH = 2000


def final_metrics(faces: FaceTable, rows: np.ndarray, preds: Predictions) -> dict:
    out: dict[str, float] = {}
    for split in ("val", "test"):
        mask = (faces.splits[rows] == split) & (faces.labels[rows] >= 0)
        if not mask.any():
            continue
        truth = faces.labels[rows][mask]
        for name, probs in (("classifier", preds.semantic), ("fused", preds.fused)):
            report = classification_report(truth, probs[mask].argmax(1))
            prefix = f"{split}_" if name == "classifier" else f"{split}_fused_"
            out[prefix + "accuracy"] = report["accuracy"]
            out[prefix + "balanced_accuracy"] = report["balanced_accuracy"]
    return out


def write_predictions(
    project: Project,
    run_id: int,
    face_ids: np.ndarray,
    preds: Predictions,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Replace the run's predictions and embeddings with these; `progress(done, total)` after
    each batch of WRITE_BATCH faces."""
    names = class_names()
    pseudo, confidence, passed = preds.pseudo_label, preds.confidence, preds.passed
    with project.session() as session:
        session.execute(delete(Prediction).where(Prediction.run_id == run_id))
        session.execute(delete(Embedding).where(Embedding.run_id == run_id))
    for start in range(0, len(face_ids), WRITE_BATCH):
        stop = min(start + WRITE_BATCH, len(face_ids))
        with project.session() as session:
            session.execute(
                insert(Prediction),
                [
                    encode_prediction(
                        run_id,
                        face_ids[i],
                        fused=preds.fused[i],
                        pseudo_label=pseudo[i],
                        confidence=confidence[i],
                        passed=passed[i],
                        names=names,
                        levels={
                            level: None if values is None else values[i]
                            for level, values in zip(LEVELS, (preds.semantic, preds.text, preds.instance))
                        },
                        extras={key: values[i] for key, values in preds.extras.items()},
                    )
                    for i in range(start, stop)
                ],
            )
            session.execute(
                insert(Embedding),
                [
                    {
                        "run_id": run_id,
                        "image_id": int(face_ids[i]),
                        "vector": preds.embedding[i].astype(np.float32).tobytes(),
                        "dim": int(preds.embedding.shape[1]),
                    }
                    for i in range(start, stop)
                ],
            )
        if progress is not None:
            progress(stop, len(face_ids))


def write_projections(
    project: Project,
    run_id: int,
    face_ids: np.ndarray,
    embeddings: np.ndarray,
    settings: TrainSettings,
    events: EventSink,
) -> None:
    methods = ["pca"] + (["umap"] if settings.projection == "umap" else [])
    if settings.projection == "none":
        return
    for method in methods:
        events.emit(Event.INFO, message=f"computing the {method.upper()} map")
        coords = project_2d(embeddings, method, seed=settings.loop.seed)
        store_projection(project, run_id, face_ids, method, coords)
        # The predictions are written by now: the studio can show this map (PCA: a preview
        # while UMAP is computed) before the run ends.
        events.emit(
            Event.MAP,
            run=run_id,
            method=method,
            final=method == methods[-1],
            message=f"the {method.upper()} map is written",
        )


def store_projection(project: Project, run_id: int, face_ids: np.ndarray, method: str, coords: np.ndarray) -> None:
    """A run's 2-D map of one method, replacing any earlier one."""
    with project.session() as session:
        session.execute(delete(Projection).where(Projection.run_id == run_id, Projection.method == method))
        session.execute(
            insert(Projection),
            [
                {"run_id": run_id, "image_id": int(i), "method": method, "x": float(x), "y": float(y)}
                for i, (x, y) in zip(face_ids, coords)
            ],
        )
