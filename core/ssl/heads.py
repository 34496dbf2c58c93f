"""The trainable model on top of the encoder features: a shared trunk, a classifier, and a
projection into the text space. In head mode it reads cached features; in fine-tune mode the
encoder's image tower runs in front of it (see core/training/models.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from core.ssl.levels import normalize


@dataclass
class HeadOutput:
    embedding: torch.Tensor  # L2-normalised trunk output: the instance level's feature
    logits: torch.Tensor  # semantic level
    projected: torch.Tensor  # L2-normalised projection into the text space
    # Per-face extras of a head (LEAF's gate weights and decoupling penalty), split with the batch.
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class ExpressionHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, text_dim: int, hidden: int = 512, dropout: float = 0.2):
        super().__init__()
        # Standardises frozen features whose scale differs between encoders.
        self.input_norm = nn.LayerNorm(in_dim)
        self.trunk = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.GELU(),
        )
        self.classifier = nn.Linear(hidden, num_classes)
        self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, text_dim))

    def forward(self, features: torch.Tensor) -> HeadOutput:
        hidden = self.trunk(self.input_norm(features))
        return HeadOutput(normalize(hidden), self.classifier(hidden), normalize(self.projection(hidden)))
