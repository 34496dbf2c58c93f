"""Head mode's assembly: from cached train features and labels to a ready Trainer. Shared by
the worker and the benchmarks, so both train exactly the same way."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core.classes import class_names
from core.ssl.algorithms import Algorithm, create_algorithm
from core.ssl.heads import ExpressionHead
from core.training.batches import CachedFeatureBatches
from core.training.loop import Hook, Trainer
from core.training.settings import TrainSettings

HEAD_HIDDEN = 512


def check_labels(labels: np.ndarray) -> None:
    labeled = labels[labels >= 0]
    if len(labeled) == 0:
        raise ValueError("the train split has no labeled faces; label some faces or import with labels")
    if len(np.unique(labeled)) < 2:
        raise ValueError("the labeled faces cover fewer than two classes; label faces of more classes")


def build_method(
    settings: TrainSettings, in_dim: int, class_text: torch.Tensor, bank_size: int, device: torch.device
) -> tuple[Algorithm, ExpressionHead]:
    """The algorithm and a fresh head, seeded, as both modes start them."""
    torch.manual_seed(settings.loop.seed)
    num_classes = len(class_names())
    algorithm = create_algorithm(
        settings.algorithm,
        settings.method,
        num_classes=num_classes,
        class_text=class_text,
        bank_size=bank_size,
        embed_dim=HEAD_HIDDEN,
        device=device,
    )
    return algorithm, algorithm.build_head(in_dim, class_text.shape[1], HEAD_HIDDEN)


def build_head_trainer(
    features: np.ndarray,
    labels: np.ndarray,
    class_text: torch.Tensor,
    settings: TrainSettings,
    device: torch.device,
    hooks: Sequence[Hook] = (),
    soft_targets: np.ndarray | None = None,
) -> Trainer:
    """`features` (N, views, dim) and `labels` (N, -1 = unlabeled) of the train faces; row i is
    memory-bank slot i. `soft_targets` (N, classes): each labeled face's target class
    probabilities (--soft-labels; rows of unlabeled faces are not read), None: the labels."""
    check_labels(labels)
    labeled = np.flatnonzero(labels >= 0)
    unlabeled = np.flatnonzero(labels < 0)
    settings = settings.resolved(len(labeled), len(unlabeled))  # "auto" numbers (a run has them already)
    algorithm, head = build_method(settings, features.shape[2], class_text, len(labels), device)
    model = head.to(device)
    source = CachedFeatureBatches(
        features,
        labeled,
        labels[labeled],
        unlabeled,
        settings.loop.batch_size,
        settings.loop.unlabeled_ratio if algorithm.uses_unlabeled else 0,
        settings.loop.feature_dropout,
        settings.loop.seed,
        device,
        settings.balanced_sampling(),
        None if soft_targets is None else soft_targets[labeled],
    )
    return Trainer(model, algorithm, source, settings.loop, device, list(hooks))
