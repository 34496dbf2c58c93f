"""LEAF's hierarchical decoupling and fusion (seeds/001), as plug-in modules.

- Semantic and instance levels: the trunk's representation passes through distinct expert
  MLPs, some meant to carry what is expression-relevant and some what is not (identity, pose,
  lighting); a learnable gate per face mixes them. A Switch-style load-balancing term keeps
  every expert in use, and a decoupling term keeps the relevant and agnostic mixtures apart,
  so the two groups cannot collapse into one shared module.
- Category level: an ambiguous pseudo-label becomes a positive set (the top classes up to a
  cumulative probability) and a negative set (the rest); the strong view's probability mass
  is pushed into the positive set and out of the negative set, weighted by how certain the
  prediction is; a consistency term pulls the strong view's prediction to the weak view's.
- The instance branch's embedding is trained with a supervised contrastive term over labeled
  and confidently pseudo-labeled faces, so its gate receives gradient in every algorithm
  (otherwise only sitfer's memory bank would read it, without gradient).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.ssl.heads import ExpressionHead, HeadOutput
from core.ssl.levels import normalize


class GatedExperts(nn.Module):
    """h -> h + sum_k g_k(h) E_k(h): `relevant` + `agnostic` distinct residual experts and a
    softmax gate per face."""

    def __init__(self, dim: int, relevant: int, agnostic: int, expert_hidden: int | None = None):
        super().__init__()
        if relevant < 1 or agnostic < 0:
            raise ValueError(
                f"need at least one expression-relevant expert and no negative counts, "
                f"got {relevant} relevant and {agnostic} agnostic"
            )
        hidden = expert_hidden or dim // 2
        self.relevant = relevant
        self.experts = nn.ModuleList(  # each its own weights: distinct experts, not one shared module
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)) for _ in range(relevant + agnostic)
        )
        self.gate = nn.Linear(dim, relevant + agnostic)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output, gate weights (B, K), decoupling penalty per face (B,))."""
        gates = self.gate(h).softmax(dim=1)
        outs = torch.stack([expert(h) for expert in self.experts], dim=1)  # (B, K, D)
        weighted = gates.unsqueeze(-1) * outs
        relevant = weighted[:, : self.relevant].sum(1)
        agnostic = weighted[:, self.relevant :].sum(1)
        if agnostic.shape[1] and self.relevant < len(self.experts):
            decoupling = F.cosine_similarity(relevant, agnostic, dim=1, eps=1e-6) ** 2
        else:
            decoupling = h.new_zeros(h.shape[0])
        return h + relevant + agnostic, gates, decoupling


class LEAFHead(ExpressionHead):
    """ExpressionHead with LEAF's semantic-level aggregation in front of the classifier and
    the text projection, and instance-level aggregation in front of the embedding."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        text_dim: int,
        hidden: int = 512,
        dropout: float = 0.2,
        relevant: int = 2,
        agnostic: int = 2,
        semantic: bool = True,
        instance: bool = True,
    ):
        super().__init__(in_dim, num_classes, text_dim, hidden, dropout)
        self.semantic_experts = GatedExperts(hidden, relevant, agnostic) if semantic else None
        self.instance_experts = GatedExperts(hidden, relevant, agnostic) if instance else None

    def forward(self, features: torch.Tensor) -> HeadOutput:
        hidden = self.trunk(self.input_norm(features))
        aux: dict[str, torch.Tensor] = {}
        semantic, instance = hidden, hidden
        decoupling = hidden.new_zeros(hidden.shape[0])
        if self.semantic_experts is not None:
            semantic, aux["gates_semantic"], penalty = self.semantic_experts(hidden)
            decoupling = decoupling + penalty
        if self.instance_experts is not None:
            instance, aux["gates_instance"], penalty = self.instance_experts(hidden)
            decoupling = decoupling + penalty
        aux["decoupling"] = decoupling
        return HeadOutput(normalize(instance), self.classifier(semantic), normalize(self.projection(semantic)), aux)


def load_balancing_loss(gates: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss, K * sum_k f_k P_k: 1 when the faces spread evenly
    over the experts, up to K when one expert takes them all. f_k (share of faces whose
    strongest gate is k) carries no gradient; P_k (mean gate weight) does."""
    k = gates.shape[1]
    share = F.one_hot(gates.argmax(dim=1), k).float().mean(0)
    return k * (share * gates.float().mean(0)).sum()


def positive_sets(probs: torch.Tensor, cumulative: float) -> torch.Tensor:
    """(B, C) bool: per face the fewest top classes whose probabilities sum to `cumulative`
    (the top class always included)."""
    sorted_probs, order = probs.sort(dim=1, descending=True)
    before = sorted_probs.cumsum(dim=1) - sorted_probs  # mass of the classes ranked above
    keep_sorted = before < cumulative
    keep_sorted[:, 0] = True
    return torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)


def certainty(probs: torch.Tensor) -> torch.Tensor:
    """1 - normalised entropy: 1 for a one-hot prediction, 0 for a uniform one."""
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(1)
    return 1.0 - entropy / math.log(probs.shape[1])


def category_level_loss(
    strong_logits: torch.Tensor, probs: torch.Tensor, eligible: torch.Tensor, cumulative: float
) -> torch.Tensor:
    """Positive/negative decoupling of ambiguous pseudo-labels: -log P(positive set) for the
    strong view, plus -log(1 - p_c) averaged over the negative set, weighted by the teacher's
    certainty; averaged over the whole batch (ineligible faces count as zero)."""
    if strong_logits.shape[0] == 0:
        return strong_logits.sum() * 0.0
    positive = positive_sets(probs, cumulative)
    p = strong_logits.float().softmax(dim=1)
    loss_pos = -torch.log((p * positive).sum(1).clamp(min=1e-6))
    negative = ~positive
    loss_neg = (-torch.log((1 - p).clamp(min=1e-6)) * negative).sum(1) / negative.sum(1).clamp(min=1)
    per_face = certainty(probs) * (loss_pos + loss_neg) * eligible.float()
    return per_face.mean()


def view_consistency_loss(target_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the strong view's class probabilities and the weak
    view's (the target, no gradient: with gradient on both sides the two views agree most
    cheaply by both going flat, which is what an early version did)."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return ((logits.float().softmax(1) - target_probs.detach().float()) ** 2).sum(1).mean()


def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """SupCon (Khosla et al. 2020) over normalised embeddings; faces with label -1 only serve
    as negatives; faces without a positive partner in the batch add nothing."""
    n = embeddings.shape[0]
    if n < 2:
        return embeddings.sum() * 0.0
    sim = embeddings.float() @ embeddings.float().T / tau
    self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - sim.logsumexp(dim=1, keepdim=True)
    positive = (labels.unsqueeze(0) == labels.unsqueeze(1)) & (labels.unsqueeze(1) >= 0) & ~self_mask
    counts = positive.sum(1)
    anchors = counts > 0
    if not anchors.any():
        return embeddings.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~positive, 0.0)).sum(1)[anchors] / counts[anchors]
    return per_anchor.mean()


def leaf_step_losses(
    config,
    outs: tuple[HeadOutput, HeadOutput | None, HeadOutput | None],
    y_l: torch.Tensor,
    probs: torch.Tensor | None,
    pseudo: torch.Tensor | None,
    mask: torch.Tensor | None,
    ramp: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LEAF's terms for one step: load balance and decoupling of the gated experts (all
    views), the instance embedding's contrastive term (labeled and confident unlabeled
    faces), and, on unlabeled faces, the category level (below threshold) and the
    weak/strong consistency. `config` is the MethodConfig; `probs` are the pseudo-label source's
    class probabilities."""
    out_l, _out_uw, out_us = outs
    # The strong view's output with the pseudo-label source's probabilities, labels and mask.
    unlabeled: tuple[HeadOutput, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    if out_us is not None:
        if probs is None or pseudo is None or mask is None:
            raise ValueError("LEAF's unlabeled terms need the pseudo-labels' probabilities, labels and mask")
        unlabeled = (out_us, probs, pseudo, mask)
    present = [o for o in outs if o is not None]
    total = out_l.logits.sum() * 0.0
    logs: dict[str, torch.Tensor] = {}
    for key in ("gates_semantic", "gates_instance"):
        if key in out_l.aux:
            balance = load_balancing_loss(torch.cat([o.aux[key] for o in present]))
            total = total + config.lambda_balance * balance
            logs[f"loss_balance_{key.removeprefix('gates_')}"] = balance.detach()
    if "decoupling" in out_l.aux:
        decoupling = torch.cat([o.aux["decoupling"] for o in present]).mean()
        total = total + config.lambda_decouple * decoupling
        logs["loss_decoupling"] = decoupling.detach()
    if config.leaf_contrast:
        embeddings, labels = out_l.embedding, y_l
        if unlabeled is not None:
            strong, _source_probs, pseudo_labels, confident = unlabeled
            embeddings = torch.cat([embeddings, strong.embedding])
            labels = torch.cat([y_l, torch.where(confident, pseudo_labels, torch.full_like(pseudo_labels, -1))])
        contrast = supervised_contrastive_loss(embeddings, labels)
        total = total + config.lambda_contrast * contrast
        logs["loss_contrast"] = contrast.detach()
    if unlabeled is not None:
        strong, source_probs, _pseudo_labels, confident = unlabeled
        if config.leaf_category:
            category = category_level_loss(strong.logits, source_probs, ~confident, config.leaf_cumulative)
            total = total + ramp * config.lambda_category * category
            logs["loss_category"] = category.detach()
        if config.leaf_consistency:
            consistency = view_consistency_loss(source_probs, strong.logits)
            total = total + ramp * config.lambda_consistency * consistency
            logs["loss_consistency"] = consistency.detach()
    return total, logs
