"""Reading a run's results back from the store: evaluation against current labels, run lists."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from core.classes import class_names
from core.store.models import RUN_FINISHED, STATUS_ACTIVE, Image, Label, Metric, Prediction, Run
from core.store.project import Project
from core.store.runs import pruned_run_message
from core.training.metrics import classification_report


class EvaluationError(RuntimeError):
    pass


def evaluate_run(project: Project, run_id: int | None, split: str) -> dict:
    index = {name: i for i, name in enumerate(class_names())}
    with project.session() as session:
        if run_id is None:
            run_id = session.scalar(select(func.max(Run.id)).where(Run.status == RUN_FINISHED))
            if run_id is None:
                raise EvaluationError("no finished run in this project yet")
        run = session.get(Run, run_id)
        if run is None:
            raise EvaluationError(f"there is no run {run_id} in this project")
        if run.predictions_pruned_at is not None:
            raise EvaluationError(pruned_run_message(run))
        rows = session.execute(
            select(Label.label, Prediction.p_semantic, Prediction.p_fused, Prediction.pseudo_label)
            .join(Prediction, Prediction.image_id == Label.image_id)
            .join(Image, Image.id == Label.image_id)
            .where(Prediction.run_id == run_id, Image.split == split, Image.status == STATUS_ACTIVE)
        ).all()
    if not rows:
        raise EvaluationError(f"run {run_id} has no predictions for labeled {split} faces")
    truth = np.array([index[r.label] for r in rows])
    result = {"run": run_id, "split": split}
    semantic = np.array([r[1] if r[1] is not None else r[2] for r in rows], dtype=np.float64)
    result["classifier"] = classification_report(truth, semantic.argmax(1))
    # The fused prediction is the stored pseudo-label, decided before the probabilities were
    # rounded to 5 decimals (an argmax of the rounded ones can break a near-tie the other way).
    result["fused"] = classification_report(truth, np.array([index[r.pseudo_label] for r in rows]))
    return result


def list_runs(project: Project) -> list[dict]:
    """Every run, oldest first: a refit names its parent, a pruned refit when it was pruned."""
    with project.session() as session:
        runs = session.scalars(select(Run).order_by(Run.id)).all()
        latest: dict[int, dict[str, float]] = {}
        for run_id, name, value in session.execute(
            select(Metric.run_id, Metric.name, Metric.value).order_by(Metric.run_id, Metric.step, Metric.id)
        ):
            latest.setdefault(run_id, {})[name] = value
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "parent": r.parent_run_id,
            "algorithm": r.algorithm,
            "encoder": r.encoder,
            "mode": r.mode,
            "status": r.status,
            "device": r.device,
            "created_at": r.created_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "pruned_at": r.predictions_pruned_at.isoformat() if r.predictions_pruned_at else None,
            "error": r.error.splitlines()[0] if r.error else None,
            "metrics": latest.get(r.id, {}),
        }
        for r in runs
    ]
