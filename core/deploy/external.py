"""`evaluate --source`: a run's accuracy on a labeled set outside the project (class folders or a
CSV manifest with a label column), in the same report as `evaluate` on a split.

Each file is one face (its largest, found and cut as `predict` does); files that cannot be read or
hold no face are counted and left out, never fatal; files without a label are left out too.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from core.classes import class_names
from core.deploy.model import TrainedModel
from core.deploy.predict import FaceOptions, PredictInputError, enumerate_inputs, predict_sources
from core.training.metrics import classification_report


def evaluate_source(
    model: TrainedModel,
    source: str | os.PathLike,
    options: FaceOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    items = enumerate_inputs([source], labeled=True)
    labeled = [item for item in items if item.label is not None]
    if not labeled:
        raise PredictInputError(
            f"{source}: no labeled files (give class folders, or a CSV manifest with a label column)"
        )
    table = predict_sources(model, [], options, progress=progress, items=labeled)
    first = {}
    problems = []
    for row in table.faces:
        if row.error:
            problems.append({"source": row.source, "error": row.error})
        elif row.face == 0:
            first[row.source] = row
    index = {name: i for i, name in enumerate(class_names())}
    rows = list(first.values())
    result: dict = {
        "run": model.run_id,
        "split": None,
        "source": str(source),
        "files": len(labeled),
        "unlabeled_files_left_out": len(items) - len(labeled),
        "unreadable": len(problems),
        "problems": problems[:50],
    }
    if not rows:
        raise PredictInputError(f"{source}: none of its {len(labeled)} labeled files gave a face to predict")
    truth = np.array([index[r.label] for r in rows if r.label is not None])
    fused = np.array([index[r.predicted] for r in rows if r.predicted is not None])
    semantic = np.array([_argmax(r.levels["semantic"], index) for r in rows])
    result["classifier"] = classification_report(truth, semantic)
    result["fused"] = classification_report(truth, fused)
    return result


def _argmax(probs: dict[str, float], index: dict[str, int]) -> int:
    return index[max(probs, key=lambda name: probs[name])]
