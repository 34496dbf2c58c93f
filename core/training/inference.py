"""Running a trained model over many faces: level probabilities and embeddings in batches."""
from __future__ import annotations

from dataclasses import dataclass

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
def predict(model: torch.nn.Module, algorithm: Algorithm, inputs: torch.Tensor, step: int,
            exclude: torch.Tensor | None = None, batch_size: int = 1024) -> Predictions:
    """`inputs` are view-0 features (head mode); `exclude` each face's own bank slot or -1."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("semantic", "text", "instance", "fused", "embedding")}
    device = next(model.parameters()).device
    for start in range(0, inputs.shape[0], batch_size):
        x = inputs[start:start + batch_size].to(device).float()
        out = model(x)
        ex = exclude[start:start + batch_size].to(device) if exclude is not None else None
        levels = algorithm.level_probs(out, step, exclude=ex)
        for name in ("semantic", "text", "instance", "fused"):
            value = getattr(levels, name)
            if value is not None:
                parts[name].append(value.float().cpu().numpy())
        parts["embedding"].append(out.embedding.float().cpu().numpy())
    stacked = {k: (np.concatenate(v) if v else None) for k, v in parts.items()}
    return Predictions(stacked["semantic"], stacked["text"], stacked["instance"], stacked["fused"],
                       stacked["embedding"], algorithm.thresholds().cpu().numpy())
