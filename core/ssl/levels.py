"""The semantic, text and instance levels, each giving class probabilities for a batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.ssl.distributed import gather_all


def semantic_probs(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=1)


def text_logits(projected: torch.Tensor, class_text: torch.Tensor, tau: float) -> torch.Tensor:
    """Cosine similarity of L2-normalised projected features to the class text embeddings / tau."""
    return projected @ class_text.T / tau


def text_probs(projected: torch.Tensor, class_text: torch.Tensor, tau: float) -> torch.Tensor:
    return text_logits(projected, class_text, tau).softmax(dim=1)


class MemoryBank:
    """Normalised features with labels, one slot per training face (by dataset index).

    Labeled faces hold their label from the start; unlabeled slots hold a confident pseudo-label
    (after the warm-up) or -1 (not in the bank). `class_similarity` is one matrix product over
    the whole bank, then a top-k per class: never a Python loop over entries.
    """

    def __init__(self, size: int, dim: int, num_classes: int, top_k: int = 5,
                 device: torch.device | str = "cpu"):
        if top_k < 1:
            raise ValueError(f"instance top_k must be at least 1, not {top_k}")
        self.num_classes = num_classes
        self.top_k = top_k
        self.features = torch.zeros(size, dim, device=device)
        self.labels = torch.full((size,), -1, dtype=torch.long, device=device)

    def to(self, device) -> "MemoryBank":
        self.features = self.features.to(device)
        self.labels = self.labels.to(device)
        return self

    def update(self, indices: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Write normalised `features` with `labels` (-1 removes the slot from the bank)."""
        indices, features, labels = (gather_all(indices), gather_all(features.detach()),
                                     gather_all(labels.to(indices.device)))
        self.features[indices] = features.to(self.features.dtype)
        self.labels[indices] = labels.to(self.labels.device)

    def class_similarity(self, queries: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C): for each query, the mean of its top-k cosine similarities to bank entries of each class.

        `exclude` gives each query's own bank index (or -1), so a face never votes for itself.
        Classes with no entries get -1 (the lowest cosine similarity).
        """
        sims = queries @ self.features.T  # (B, M): the one matrix product
        if exclude is not None:
            rows = torch.nonzero(exclude >= 0).squeeze(1)
            sims[rows, exclude[rows]] = float("-inf")
        out = torch.full((queries.shape[0], self.num_classes), -1.0, device=queries.device)
        for c in range(self.num_classes):  # C (=7) column gathers + top-k's, each over the whole batch
            members = torch.nonzero(self.labels == c).squeeze(1)
            if len(members) == 0:
                continue
            top = sims[:, members].topk(min(self.top_k, len(members)), dim=1).values
            finite = torch.isfinite(top)
            total = torch.where(finite, top, torch.zeros_like(top)).sum(1)
            out[:, c] = torch.where(finite.any(1), total / finite.sum(1).clamp(min=1), out[:, c])
        return out

    def probs(self, queries: torch.Tensor, tau: float, exclude: torch.Tensor | None = None) -> torch.Tensor:
        return (self.class_similarity(queries, exclude) / tau).softmax(dim=1)

    def state_dict(self) -> dict:
        return {"features": self.features.cpu(), "labels": self.labels.cpu(), "top_k": self.top_k}

    def load_state_dict(self, state: dict) -> None:
        self.features = state["features"].to(self.features.device)
        self.labels = state["labels"].to(self.labels.device)
        self.top_k = int(state["top_k"])


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)
