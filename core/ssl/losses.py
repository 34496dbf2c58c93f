"""The losses of DESIGN.md section 2: supervised, text co-supervision, masked unlabeled, negative."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against class probabilities `targets` (B, C), e.g. annotators' vote
    shares, written as the hard loss on `labels` plus the targets' departure from one-hot, so a
    face whose target is one-hot of its label adds exactly zero: a batch of one-hot targets gives
    the hard loss and its gradient bit for bit (F.cross_entropy with probabilities reduces in
    another order and differs in the last digits)."""
    hard = F.cross_entropy(logits, labels)
    log_probs = logits.float().log_softmax(dim=1)
    one_hot = F.one_hot(labels, logits.shape[1]).to(log_probs.dtype)
    return hard + ((one_hot - targets.to(log_probs.dtype)) * log_probs).sum(1).mean()


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
