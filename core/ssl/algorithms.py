"""Algorithms as small registered units over the shared training loop (core/training/loop.py).

An algorithm turns one batch into losses and turns model outputs into level probabilities.
`supervised` and `fixmatch` are the baselines; `sitfer` fuses the semantic, text and instance
levels, with a switch for each level, for dynamic thresholds (DTA) and for selective negative
learning (SNL), so every ablation is one flag.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import torch
import torch.nn.functional as F

from core.ssl.fusion import LevelProbs, fuse
from core.ssl.heads import HeadOutput
from core.ssl.levels import MemoryBank, text_logits
from core.ssl.losses import masked_cross_entropy, negative_learning_loss
from core.ssl.thresholds import DynamicThresholds, FixedThreshold, passes


@dataclass
class MethodConfig:
    """Settings of the method; every field is a command-line flag of `train`."""

    use_semantic: bool = True
    use_text: bool = True
    use_instance: bool = True
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # semantic, text, instance
    text_tau: float = 0.1
    instance_tau: float = 0.1
    instance_top_k: int = 5
    instance_warmup: int = 300  # steps before pseudo-labeled faces join the bank and the fusion
    threshold: float = 0.95  # the fixed threshold (fixmatch; sitfer without DTA)
    dynamic_threshold: bool = True
    dta_momentum: float = 0.99
    dta_floor: float = 0.5
    dta_ceiling: float = 0.95
    negative_learning: bool = True
    snl_gamma: float = 0.05
    lambda_text: float = 1.0
    lambda_u: float = 1.0
    lambda_neg: float = 0.5
    unlabeled_rampup: int = 0  # steps over which lambda_u and lambda_neg grow linearly from 0

    def validate(self) -> None:
        for name in ("text_tau", "instance_tau"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        for name in ("lambda_text", "lambda_u", "lambda_neg", "instance_warmup", "unlabeled_rampup"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if len(self.weights) != 3 or any(w < 0 for w in self.weights):
            raise ValueError(f"weights must be three numbers >= 0 (semantic, text, instance), not {self.weights}")
        if not 0 < self.snl_gamma < 1:
            raise ValueError(f"snl_gamma must lie in (0, 1), not {self.snl_gamma}")

    @classmethod
    def from_dict(cls, values: dict) -> "MethodConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown method setting(s): {', '.join(unknown)}")
        values = dict(values)
        if "weights" in values:
            values["weights"] = tuple(float(w) for w in values["weights"])
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Batch:
    """Labeled faces (x_l, y_l) and unlabeled weak/strong views; idx_* are memory bank slots."""

    x_l: torch.Tensor
    y_l: torch.Tensor
    idx_l: torch.Tensor
    x_uw: torch.Tensor | None = None
    x_us: torch.Tensor | None = None
    idx_u: torch.Tensor | None = None


@dataclass
class StepResult:
    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class Algorithm:
    name = ""
    uses_unlabeled = True
    # Which level probabilities this algorithm produces (the studio shows the others as absent).
    levels = ("semantic",)

    def __init__(self, config: MethodConfig, num_classes: int, class_text: torch.Tensor | None,
                 bank_size: int, embed_dim: int, device: torch.device):
        config.validate()
        self.config = config
        self.num_classes = num_classes
        self.class_text = class_text.to(device) if class_text is not None else None
        self.device = device
        self.threshold = self._make_threshold()
        self.bank: MemoryBank | None = None

    def _make_threshold(self):
        return FixedThreshold(self.num_classes, self.config.threshold)

    # -- training ----------------------------------------------------------------------------
    def forward(self, model, batch: Batch) -> tuple[HeadOutput, HeadOutput | None, HeadOutput | None]:
        """One forward pass over labeled, weak and strong views together."""
        parts = [batch.x_l] + ([batch.x_uw, batch.x_us] if self.uses_unlabeled and batch.x_uw is not None else [])
        out = model(torch.cat(parts))
        sizes = [p.shape[0] for p in parts]
        chunks = [HeadOutput(*(t.split(sizes) [i] for t in (out.embedding, out.logits, out.projected)))
                  for i in range(len(parts))]
        return chunks[0], (chunks[1] if len(chunks) > 1 else None), (chunks[2] if len(chunks) > 2 else None)

    def train_step(self, model, batch: Batch, step: int) -> StepResult:
        raise NotImplementedError

    def unlabeled_weight(self, step: int) -> float:
        """Ramp for the unlabeled losses: early pseudo-labels of a barely trained model mislead."""
        rampup = self.config.unlabeled_rampup
        return 1.0 if rampup <= 0 else min(1.0, step / rampup)

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def level_probs(self, out: HeadOutput, step: int, exclude: torch.Tensor | None = None) -> LevelProbs:
        semantic = out.logits.softmax(dim=1)
        return LevelProbs(semantic, None, None, semantic)

    def thresholds(self) -> torch.Tensor:
        return self.threshold.thresholds()

    def state_dict(self) -> dict:
        return {"threshold": self.threshold.state_dict(),
                "bank": self.bank.state_dict() if self.bank is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.threshold.load_state_dict(state["threshold"])
        if self.bank is not None and state.get("bank") is not None:
            self.bank.load_state_dict(state["bank"])


class Supervised(Algorithm):
    name = "supervised"
    uses_unlabeled = False

    def train_step(self, model, batch: Batch, step: int) -> StepResult:
        out_l, _, _ = self.forward(model, batch)
        loss = F.cross_entropy(out_l.logits, batch.y_l)
        return StepResult(loss, {"loss_sup": loss.item()})


class FixMatch(Algorithm):
    """Sohn et al. 2020: pseudo-labels from the weak view's classifier above a fixed threshold
    supervise the strong view."""

    name = "fixmatch"

    def train_step(self, model, batch: Batch, step: int) -> StepResult:
        out_l, out_uw, out_us = self.forward(model, batch)
        loss_sup = F.cross_entropy(out_l.logits, batch.y_l)
        probs = out_uw.logits.detach().softmax(dim=1)
        pseudo, _conf, mask = passes(probs, self.thresholds())
        loss_u = masked_cross_entropy(out_us.logits, pseudo, mask)
        loss = loss_sup + self.unlabeled_weight(step) * self.config.lambda_u * loss_u
        return StepResult(loss, {"loss_sup": loss_sup.item(), "loss_u": loss_u.item(),
                                 "mask_rate": mask.float().mean().item()})


class SITFER(Algorithm):
    """Semantic + instance + text pseudo-labels, fused; text co-supervision on labeled faces;
    class-wise dynamic thresholds; selective negative learning below threshold."""

    name = "sitfer"

    def __init__(self, config: MethodConfig, num_classes: int, class_text: torch.Tensor | None,
                 bank_size: int, embed_dim: int, device: torch.device):
        super().__init__(config, num_classes, class_text, bank_size, embed_dim, device)
        if config.use_text and class_text is None:
            raise ValueError("the text level needs class text embeddings")
        if not (config.use_semantic or config.use_text or config.use_instance):
            raise ValueError("sitfer needs at least one level (semantic, text or instance)")
        self.levels = tuple(name for name, on in (("semantic", config.use_semantic), ("text", config.use_text),
                                                  ("instance", config.use_instance)) if on)
        if config.use_instance:
            self.bank = MemoryBank(bank_size, embed_dim, num_classes, config.instance_top_k, device)

    def _make_threshold(self):
        c = self.config
        if c.dynamic_threshold:
            return DynamicThresholds(self.num_classes, c.dta_momentum, c.dta_floor, c.dta_ceiling)
        return FixedThreshold(self.num_classes, c.threshold)

    def instance_active(self, step: int) -> bool:
        return self.bank is not None and step >= self.config.instance_warmup

    @torch.no_grad()
    def level_probs(self, out: HeadOutput, step: int, exclude: torch.Tensor | None = None) -> LevelProbs:
        c = self.config
        semantic = out.logits.softmax(dim=1)
        text = (text_logits(out.projected, self.class_text, c.text_tau).softmax(dim=1)
                if c.use_text else None)
        instance = None
        if self.bank is not None and (self.instance_active(step) or not c.use_semantic and not c.use_text):
            instance = self.bank.probs(out.embedding, c.instance_tau, exclude)
        fused = fuse(semantic if c.use_semantic else None, text, instance, c.weights) \
            if (c.use_semantic or text is not None or instance is not None) else semantic
        return LevelProbs(semantic, text, instance, fused)

    def train_step(self, model, batch: Batch, step: int) -> StepResult:
        c = self.config
        out_l, out_uw, out_us = self.forward(model, batch)
        loss_sup = F.cross_entropy(out_l.logits, batch.y_l)
        logs: dict[str, float] = {"loss_sup": loss_sup.item()}
        loss = loss_sup
        if c.use_text:
            loss_text = F.cross_entropy(text_logits(out_l.projected, self.class_text, c.text_tau), batch.y_l)
            loss = loss + c.lambda_text * loss_text
            logs["loss_text"] = loss_text.item()
        if self.bank is not None:
            self.bank.update(batch.idx_l, out_l.embedding, batch.y_l)
        if out_uw is None:
            return StepResult(loss, logs)

        with torch.no_grad():
            levels = self.level_probs(HeadOutput(out_uw.embedding.detach(), out_uw.logits.detach(),
                                                 out_uw.projected.detach()), step, exclude=batch.idx_u)
            self.threshold.update(levels.fused)
            pseudo, _confidence, mask = passes(levels.fused, self.thresholds())
        loss_u = masked_cross_entropy(out_us.logits, pseudo, mask)
        if c.use_text:  # the strong view's projection learns the fused pseudo-label too
            loss_u = loss_u + masked_cross_entropy(
                text_logits(out_us.projected, self.class_text, c.text_tau), pseudo, mask)
        ramp = self.unlabeled_weight(step)
        loss = loss + ramp * c.lambda_u * loss_u
        logs.update(loss_u=loss_u.item(), mask_rate=mask.float().mean().item())
        if c.negative_learning:
            loss_neg = negative_learning_loss(out_us.logits, levels.fused, ~mask, c.snl_gamma)
            loss = loss + ramp * c.lambda_neg * loss_neg
            logs["loss_neg"] = loss_neg.item()
        if self.bank is not None and step >= c.instance_warmup:
            # Confident pseudo-labels join the bank; faces that fell below leave it.
            self.bank.update(batch.idx_u, out_uw.embedding.detach(), torch.where(mask, pseudo, -1))
            logs["bank_size"] = float((self.bank.labels >= 0).sum().item())
        return StepResult(loss, logs)


ALGORITHMS: dict[str, Callable[..., Algorithm]] = {
    cls.name: cls for cls in (Supervised, FixMatch, SITFER)
}


def create_algorithm(name: str, config: MethodConfig, **kwargs) -> Algorithm:
    try:
        factory = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}") from None
    return factory(config, **kwargs)
