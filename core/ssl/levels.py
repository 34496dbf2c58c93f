"""The semantic, text and instance levels, each giving class probabilities for a batch."""

from __future__ import annotations

from dataclasses import dataclass

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
    (after the warm-up) or -1 (not in the bank). `class_similarity` multiplies the queries with
    each class's entries only (kept sorted by class, rebuilt after an update): empty slots cost
    nothing, and no (batch x bank) matrix is gathered column by column. Never a Python loop over
    entries.
    """

    def __init__(self, size: int, dim: int, num_classes: int, top_k: int = 5, device: torch.device | str = "cpu"):
        if top_k < 1:
            raise ValueError(f"instance top_k must be at least 1, not {top_k}")
        self.num_classes = num_classes
        self.top_k = top_k
        self.features = torch.zeros(size, dim, device=device)
        self.labels = torch.full((size,), -1, dtype=torch.long, device=device)
        self._by_class: _ClassBlocks | None = None
        self._by_class_key: tuple = ()

    def to(self, device) -> MemoryBank:
        self.features = self.features.to(device)
        self.labels = self.labels.to(device)
        self._by_class = None
        return self

    def update(self, indices: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Write normalised `features` with `labels` (-1 removes the slot from the bank)."""
        indices, features, labels = (
            gather_all(indices),
            gather_all(features.detach()),
            gather_all(labels.to(indices.device)),
        )
        self.features[indices] = features.to(self.features.dtype)
        self.labels[indices] = labels.to(self.labels.device)
        self._by_class = None

    def class_similarity(self, queries: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C): for each query, the mean of its top-k cosine similarities to bank entries of each class.

        `exclude` gives each query's own bank index (or -1), so a face never votes for itself.
        Classes with no entries get -1 (the lowest cosine similarity).
        """
        blocks = self._blocks()
        out = torch.full((queries.shape[0], self.num_classes), -1.0, device=queries.device)
        own = None  # the queries that are bank entries: their rows, and their entries' classes and positions
        if exclude is not None:
            own_rows = torch.nonzero(exclude >= 0).squeeze(1)
            own_slots = exclude[own_rows]
            own = (own_rows, self.labels[own_slots], blocks.position[own_slots])
        for c in range(self.num_classes):  # C (=7) products + top-k's, each over the whole batch
            start, stop = blocks.bounds[c], blocks.bounds[c + 1]
            if stop == start:
                continue
            sims = queries @ blocks.features[start:stop].T  # (B, members of c)
            if own is not None:
                own_rows, own_class, own_pos = own
                mine = own_class == c
                sims[own_rows[mine], own_pos[mine]] = float("-inf")
            top = sims.topk(min(self.top_k, stop - start), dim=1).values
            finite = torch.isfinite(top)
            total = torch.where(finite, top, torch.zeros_like(top)).sum(1)
            out[:, c] = torch.where(finite.any(1), total / finite.sum(1).clamp(min=1), out[:, c])
        return out

    def probs(self, queries: torch.Tensor, tau: float, exclude: torch.Tensor | None = None) -> torch.Tensor:
        return (self.class_similarity(queries, exclude) / tau).softmax(dim=1)

    def filled(self) -> int:
        return int((self.labels >= 0).sum())

    def _blocks(self) -> _ClassBlocks:
        # Keyed by the tensors' version counters too: a caller writing slots in place (the refit's
        # carried bank) still gets a fresh view.
        key = (id(self.features), self.features._version, id(self.labels), self.labels._version)
        if self._by_class is None or self._by_class_key != key:
            self._by_class = _ClassBlocks.of(self.features, self.labels, self.num_classes)
            self._by_class_key = key
        return self._by_class

    def state_dict(self) -> dict:
        return {"features": self.features.cpu(), "labels": self.labels.cpu(), "top_k": self.top_k}

    def load_state_dict(self, state: dict) -> None:
        self.features = state["features"].to(self.features.device)
        self.labels = state["labels"].to(self.labels.device)
        self.top_k = int(state["top_k"])
        self._by_class = None


class FrozenBank:
    """A memory bank's entries as constants, for a model taken out of its run (an exported graph,
    a `predict` over new faces): each class's entries in a block of their own, and per query one
    product and one top-k per class, stacked. The same numbers as `MemoryBank.probs` without
    `exclude` (no new face is a bank entry), written without the scatter and the masking that an
    ONNX or TorchScript trace cannot carry."""

    def __init__(self, bank: MemoryBank):
        blocks = bank._blocks()
        self.num_classes = bank.num_classes
        self.top_k = bank.top_k
        self.blocks = [
            blocks.features[blocks.bounds[c] : blocks.bounds[c + 1]].clone() for c in range(bank.num_classes)
        ]

    @property
    def sizes(self) -> list[int]:
        return [len(block) for block in self.blocks]

    def class_similarity(self, queries: torch.Tensor) -> torch.Tensor:
        columns = []
        for block in self.blocks:
            if len(block) == 0:  # no entries of this class: the lowest cosine similarity, as MemoryBank
                columns.append(queries[:, 0] * 0.0 - 1.0)
                continue
            sims = queries @ block.to(queries.device, queries.dtype).T
            columns.append(sims.topk(min(self.top_k, len(block)), dim=1).values.mean(dim=1))
        return torch.stack(columns, dim=1)

    def probs(self, queries: torch.Tensor, tau: float, exclude: torch.Tensor | None = None) -> torch.Tensor:
        if exclude is not None and bool((exclude >= 0).any()):
            raise ValueError("a frozen bank predicts new faces only: no query can be one of its entries")
        return (self.class_similarity(queries) / tau).softmax(dim=1)


@dataclass(frozen=True)
class _ClassBlocks:
    """The bank's filled slots sorted by class: class c's entries are features[bounds[c]:bounds[c+1]];
    `position` maps a slot to its row within its class's block (-1 for an empty slot)."""

    features: torch.Tensor
    bounds: list[int]
    position: torch.Tensor

    @staticmethod
    def of(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> _ClassBlocks:
        filled = torch.nonzero(labels >= 0).squeeze(1)
        order = filled[torch.argsort(labels[filled], stable=True)]
        counts = torch.bincount(labels[order], minlength=num_classes)[:num_classes].tolist()
        bounds = [0]
        for count in counts:
            bounds.append(bounds[-1] + int(count))
        position = torch.full_like(labels, -1)
        if len(order):
            starts = torch.tensor(bounds[:-1], device=labels.device)[labels[order]]
            position[order] = torch.arange(len(order), device=labels.device) - starts
        return _ClassBlocks(features[order], bounds, position)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)
