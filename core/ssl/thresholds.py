"""Confidence thresholds for pseudo-labels: fixed, or dynamic per class (DTA).

The dynamic rule follows FreeMatch's self-adaptive thresholds: a global level that tracks the
EMA of the model's mean confidence on unlabeled faces, scaled per class by the EMA of that
class's mean probability (relative to the largest), with a floor so that early, unsure
predictions never pass too cheaply, and a ceiling so that every class can pass eventually.
"""

from __future__ import annotations

import torch

from core.ssl.distributed import gather_all


class FixedThreshold:
    def __init__(self, num_classes: int, value: float):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], not {value}")
        self.value = value
        self.num_classes = num_classes

    def update(self, probs: torch.Tensor) -> None:
        pass

    def thresholds(self) -> torch.Tensor:
        return torch.full((self.num_classes,), self.value)

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class DynamicThresholds:
    def __init__(self, num_classes: int, momentum: float = 0.99, floor: float = 0.5, ceiling: float = 0.95):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"threshold momentum must lie in [0, 1), not {momentum}")
        if not 0.0 < floor <= ceiling <= 1.0:
            raise ValueError(f"need 0 < floor <= ceiling <= 1, got floor {floor}, ceiling {ceiling}")
        self.num_classes = num_classes
        self.momentum = momentum
        self.floor = floor
        self.ceiling = ceiling
        self.global_confidence = torch.tensor(1.0 / num_classes)
        self.class_probability = torch.full((num_classes,), 1.0 / num_classes)

    @torch.no_grad()
    def update(self, probs: torch.Tensor) -> None:
        probs = gather_all(probs.detach().float()).cpu()
        m = self.momentum
        self.global_confidence = m * self.global_confidence + (1 - m) * probs.max(dim=1).values.mean()
        self.class_probability = m * self.class_probability + (1 - m) * probs.mean(dim=0)

    def thresholds(self) -> torch.Tensor:
        relative = self.class_probability / self.class_probability.max().clamp(min=1e-12)
        return (relative * self.global_confidence).clamp(self.floor, self.ceiling)

    def state_dict(self) -> dict:
        return {"global_confidence": self.global_confidence, "class_probability": self.class_probability}

    def load_state_dict(self, state: dict) -> None:
        self.global_confidence = state["global_confidence"].clone()
        self.class_probability = state["class_probability"].clone()


def passes(probs: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pseudo-labels, confidences, mask of those at or above their class's threshold)."""
    confidence, pseudo = probs.max(dim=1)
    return pseudo, confidence, confidence >= thresholds.to(probs.device)[pseudo]
