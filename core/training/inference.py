"""Running a trained model over many faces: level probabilities and embeddings in batches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from core.ssl.algorithms import Algorithm


@dataclass
class Predictions:
    semantic: np.ndarray
    text: np.ndarray | None
    instance: np.ndarray | None
    fused: np.ndarray
    embedding: np.ndarray
    thresholds: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # the algorithm's own (LEAF's positive set)

    @property
    def pseudo_label(self) -> np.ndarray:
        return self.fused.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.fused.max(axis=1)

    @property
    def passed(self) -> np.ndarray:
        return self.confidence >= self.thresholds[self.pseudo_label]


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    algorithm: Algorithm,
    inputs: torch.Tensor,
    step: int,
    exclude: torch.Tensor | None = None,
    batch_size: int = 1024,
) -> Predictions:
    """`inputs` are view-0 features (head mode); `exclude` each face's own bank slot or -1."""
    batches = (
        (inputs[i : i + batch_size], exclude[i : i + batch_size] if exclude is not None else None)
        for i in range(0, inputs.shape[0], batch_size)
    )
    return predict_batches(model, algorithm, batches, step)


@torch.no_grad()
def predict_batches(
    model: torch.nn.Module, algorithm: Algorithm, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], step: int
) -> Predictions:
    """Level probabilities and embeddings over (inputs, own bank slot or None) batches: cached
    features in head mode, preprocessed images in fine-tune mode."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("semantic", "text", "instance", "fused", "embedding")}
    extras: dict[str, list[np.ndarray]] = {}
    device = next(model.parameters()).device
    for x, ex in batches:
        out = model(x.to(device).float())
        levels = algorithm.level_probs(out, step, exclude=ex.to(device) if ex is not None else None)
        for name in ("semantic", "text", "instance", "fused"):
            value = getattr(levels, name)
            if value is not None:
                parts[name].append(value.float().cpu().numpy())
        parts["embedding"].append(out.embedding.float().cpu().numpy())
        for name, value in algorithm.face_extras(levels).items():
            extras.setdefault(name, []).append(value.cpu().numpy())
    stacked = {k: (np.concatenate(v) if v else None) for k, v in parts.items()}
    semantic, fused, embedding = stacked["semantic"], stacked["fused"], stacked["embedding"]
    if semantic is None or fused is None or embedding is None:
        raise ValueError("no predictions: the batches held no faces (or the algorithm gave no semantic level)")
    return Predictions(
        semantic,
        stacked["text"],
        stacked["instance"],
        fused,
        embedding,
        algorithm.thresholds().cpu().numpy(),
        {name: np.concatenate(values) for name, values in extras.items()},
    )
