"""Weighted fusion of the level probabilities into one distribution."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LevelProbs:
    semantic: torch.Tensor | None
    text: torch.Tensor | None
    instance: torch.Tensor | None
    fused: torch.Tensor


def fuse(
    semantic: torch.Tensor | None,
    text: torch.Tensor | None,
    instance: torch.Tensor | None,
    weights: tuple[float, float, float],
) -> torch.Tensor:
    """p = sum_l w_l p_l over the levels present, with the weights renormalised to sum to 1."""
    parts = [(w, p) for w, p in zip(weights, (semantic, text, instance)) if p is not None and w > 0]
    if not parts:
        raise ValueError("fusion needs at least one level with a positive weight")
    total = sum(w for w, _ in parts)
    terms = [w / total * p for w, p in parts]
    return sum(terms[1:], start=terms[0])
