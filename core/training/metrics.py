"""Classification metrics: accuracy, balanced accuracy, per-class recall, confusion matrix."""

from __future__ import annotations

import numpy as np

from core.classes import class_names


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> dict:
    """Metrics over the faces with a true label (y_true >= 0). Classes absent from y_true are left
    out of balanced accuracy and get recall None."""
    names = class_names()
    num_classes = num_classes or len(names)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    keep = y_true >= 0
    y_true, y_pred = y_true[keep], y_pred[keep]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    support = confusion.sum(axis=1)
    recalls = {names[c]: (float(confusion[c, c] / support[c]) if support[c] else None) for c in range(num_classes)}
    present = [r for r in recalls.values() if r is not None]
    return {
        "n": int(keep.sum()),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else None,
        "balanced_accuracy": float(np.mean(present)) if present else None,
        "per_class": recalls,
        "confusion": confusion.tolist(),
        "classes": names[:num_classes],
    }
