"""Batch sources for the loop. Head mode draws from cached features: weak view = the face or
its mirror (the other one is the batch's mirrored weak view), strong view = one of the strongly
augmented views with feature dropout."""

from __future__ import annotations

import numpy as np
import torch

from core.ssl.algorithms import Batch


class CachedFeatureBatches:
    """Samples labeled and unlabeled faces from a (N, views, dim) feature array.

    `labeled` and `unlabeled` are row positions into the array (also the memory-bank slots);
    `labels` holds the class of each labeled row, `soft_targets` (labeled, classes) its target
    class probabilities where the run trains with soft labels.
    """

    def __init__(
        self,
        features: np.ndarray,
        labeled: np.ndarray,
        labels: np.ndarray,
        unlabeled: np.ndarray,
        batch_size: int,
        unlabeled_ratio: int,
        feature_dropout: float,
        seed: int,
        device: torch.device,
        balanced: bool = False,
        soft_targets: np.ndarray | None = None,
    ):
        if len(labeled) == 0:
            raise ValueError("no labeled training faces: label some faces (or import with labels) first")
        if soft_targets is not None and len(soft_targets) != len(labeled):
            raise ValueError(f"{len(soft_targets)} soft targets for {len(labeled)} labeled faces")
        self.soft_targets = (
            None if soft_targets is None else torch.as_tensor(soft_targets, dtype=torch.float32).to(device)
        )
        # float16; on the GPU when training there, so a batch is gathered without a host copy.
        self.features = torch.from_numpy(np.ascontiguousarray(features)).to(device)
        self.labeled = torch.as_tensor(labeled, dtype=torch.long)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.unlabeled = torch.as_tensor(unlabeled, dtype=torch.long)
        self.batch_size = batch_size
        self.unlabeled_batch = batch_size * unlabeled_ratio if len(unlabeled) else 0
        self.feature_dropout = feature_dropout
        self.device = device
        self.balanced = balanced
        self.n_views = features.shape[1]
        self.generator = torch.Generator().manual_seed(seed)
        self._by_class = [torch.nonzero(self.labels == c).squeeze(1) for c in range(int(self.labels.max()) + 1)]
        self._by_class = [members for members in self._by_class if len(members)]

    def _labeled_positions(self) -> torch.Tensor:
        g = self.generator
        if not self.balanced:
            return torch.randint(len(self.labeled), (self.batch_size,), generator=g)
        classes = torch.randint(len(self._by_class), (self.batch_size,), generator=g)
        return torch.stack(
            [self._by_class[c][torch.randint(len(self._by_class[c]), (1,), generator=g)][0] for c in classes.tolist()]
        )

    def _views(self, rows: torch.Tensor, low: int, high: int) -> torch.Tensor:
        return self._gather(rows, torch.randint(low, high, (len(rows),), generator=self.generator))

    def _gather(self, rows: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        return self.features[rows.to(self.device), views.to(self.device)].float()

    def next_batch(self, step: int) -> Batch:
        g = self.generator
        positions = self._labeled_positions()
        rows_l = self.labeled[positions]
        x_l = self._views(rows_l, 0, 2)
        batch = Batch(x_l, self.labels[positions].to(self.device), rows_l.to(self.device))
        if self.soft_targets is not None:
            batch.soft_l = self.soft_targets[positions.to(self.device)]
        if self.unlabeled_batch:
            rows_u = self.unlabeled[torch.randint(len(self.unlabeled), (self.unlabeled_batch,), generator=g)]
            strong_low = 2 if self.n_views > 2 else 0
            x_us = self._views(rows_u, strong_low, self.n_views)
            # Dropout on the strong view's features stands in for the pixel-level Cutout that a
            # frozen encoder cannot learn from.
            mask = (torch.rand(x_us.shape, generator=g) >= self.feature_dropout).to(self.device)
            x_us = x_us * mask / (1 - self.feature_dropout)
            weak = torch.randint(0, 2, (len(rows_u),), generator=g)
            batch.x_uw = self._gather(rows_u, weak)
            if self.n_views > 1:  # views 0 and 1 are the face and its mirror image
                batch.x_uw_alt = self._gather(rows_u, 1 - weak)
            batch.x_us = x_us
            batch.idx_u = rows_u.to(self.device)
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
