"""The losses of DESIGN.md section 2: supervised, text co-supervision, masked unlabeled, negative."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the whole batch (masked-out faces count as zero), as FixMatch does, so the
    loss scale follows the share of faces that pass."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    per_face = F.cross_entropy(logits, targets, reduction="none")
    return (per_face * mask.float()).mean()


def negative_learning_loss(
    logits: torch.Tensor, fused: torch.Tensor, below: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Selective negative learning: for faces below threshold, every class whose fused
    probability is under gamma is a complementary label; loss -log(1 - p_c) on those classes."""
    complementary = (fused < gamma) & below.unsqueeze(1)
    if not complementary.any():
        return logits.sum() * 0.0
    probs = logits.softmax(dim=1)
    per_class = -torch.log((1.0 - probs).clamp(min=1e-6)) * complementary.float()
    per_face = per_class.sum(1) / complementary.sum(1).clamp(min=1)
    return per_face[below].mean()
