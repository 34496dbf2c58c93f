"""Algorithms as small registered units over the shared training loop (core/training/loop.py).

An algorithm turns one batch into losses and turns model outputs into level probabilities.
`supervised` and `fixmatch` are the baselines; `sitfer` fuses the semantic, text and instance
levels, with a switch for each level, for dynamic thresholds (DTA) and for selective negative
learning (SNL), so every ablation is one flag. `leaf` and `dta-snl` are the other two seed
methods (seeds/001 and 002); LEAF's modules (core/ssl/leaf.py) also plug into fixmatch and
sitfer (--leaf-modules), and DTA-SNL's spatial modules (core/ssl/spatial.py) into any
algorithm in fine-tune mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from core.ssl.config import MethodConfig
from core.ssl.fusion import LevelProbs, fuse
from core.ssl.heads import ExpressionHead, HeadOutput
from core.ssl.leaf import LEAFHead, leaf_step_losses, positive_sets
from core.ssl.levels import MemoryBank, normalize, text_logits
from core.ssl.losses import masked_cross_entropy, negative_learning_loss, soft_cross_entropy
from core.ssl.spec import ALGORITHM_NAMES, AlgorithmTraits, algorithm_spec, algorithm_traits
from core.ssl.thresholds import DynamicThresholds, FixedThreshold, passes


@dataclass
class Batch:
    """Labeled faces (x_l, y_l) and unlabeled weak/strong views; idx_* are memory bank slots.

    `soft_l` (B, C): the labeled faces' soft targets (their annotators' vote shares, with
    --soft-labels), which every supervised loss reads (`supervised_loss`); y_l stays the
    consensus class for everything that needs one (the bank, LEAF's contrastive positives)."""

    x_l: torch.Tensor
    y_l: torch.Tensor
    idx_l: torch.Tensor
    x_uw: torch.Tensor | None = None
    x_us: torch.Tensor | None = None
    idx_u: torch.Tensor | None = None
    x_uw_alt: torch.Tensor | None = None  # the weak view mirrored (for pseudo-label ensembling)
    soft_l: torch.Tensor | None = None  # None: the run trains on hard labels


def supervised_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Cross-entropy of the labeled faces against their targets: the vote shares where the batch
    carries them (--soft-labels), their class otherwise."""
    if batch.soft_l is None:
        return F.cross_entropy(logits, batch.y_l)
    return soft_cross_entropy(logits, batch.y_l, batch.soft_l)


@dataclass
class StepResult:
    loss: torch.Tensor
    # Detached 0-dim tensors (or floats): they stay on the device until a hook needs a number, so
    # a GPU step does not wait for its kernels once per logged value (MetricsHook reads them in bulk).
    logs: dict[str, torch.Tensor | float] = field(default_factory=dict)


class Algorithm:
    name = ""
    # Which level probabilities this algorithm produces (the studio shows the others as absent).
    levels: tuple[str, ...] = ("semantic",)
    always_leaf = False

    def __init__(
        self,
        config: MethodConfig,
        num_classes: int,
        class_text: torch.Tensor | None,
        bank_size: int,
        embed_dim: int,
        device: torch.device,
    ):
        config.validate()
        self.config = config
        self.num_classes = num_classes
        self.class_text = class_text.to(device) if class_text is not None else None
        self.device = device
        self.threshold = self._make_threshold()
        self.bank: MemoryBank | None = None
        # The EMA teacher; the Trainer attaches it (algorithms that want it use it for pseudo-labels).
        self.teacher: torch.nn.Module | None = None
        self.leaf = self.always_leaf or config.leaf_modules

    @property
    def traits(self) -> AlgorithmTraits:
        """Its defaults (its spec in core/ssl/spec.py, readable without torch)."""
        return algorithm_traits(self.name)

    @property
    def uses_unlabeled(self) -> bool:
        return self.traits.uses_unlabeled

    def build_head(self, in_dim: int, text_dim: int, hidden: int) -> ExpressionHead:
        """The trainable head this algorithm trains: LEAF's gated one where LEAF is on."""
        c = self.config
        if not self.leaf:
            return ExpressionHead(in_dim, self.num_classes, text_dim, hidden=hidden)
        return LEAFHead(
            in_dim,
            self.num_classes,
            text_dim,
            hidden=hidden,
            relevant=c.leaf_relevant_experts,
            agnostic=c.leaf_agnostic_experts,
            semantic=c.leaf_semantic_experts,
            instance=c.leaf_instance_experts,
        )

    def leaf_losses(
        self,
        outs: tuple[HeadOutput, HeadOutput | None, HeadOutput | None],
        y_l: torch.Tensor,
        probs: torch.Tensor | None,
        pseudo: torch.Tensor | None,
        mask: torch.Tensor | None,
        ramp: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return leaf_step_losses(self.config, outs, y_l, probs, pseudo, mask, ramp)

    def face_extras(self, levels: LevelProbs) -> dict[str, torch.Tensor]:
        """Per-face outputs of this algorithm's own, written with its predictions."""
        if not self.leaf:
            return {}
        return {"positive_set": positive_sets(levels.fused, self.config.leaf_cumulative)}

    def _make_threshold(self):
        return FixedThreshold(self.num_classes, self.config.threshold)

    # -- training ----------------------------------------------------------------------------
    def forward(self, model, batch: Batch) -> tuple[HeadOutput, HeadOutput | None, HeadOutput | None]:
        """One forward pass over labeled, weak and strong views together."""
        parts = [batch.x_l]
        if self.uses_unlabeled and batch.x_uw is not None:
            if batch.x_us is None:
                raise ValueError("a batch with a weak unlabeled view needs its strong view (x_us) too")
            parts += [batch.x_uw, batch.x_us]
        chunks = _split(model(torch.cat(parts)), [p.shape[0] for p in parts])
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
        return {
            "threshold": self.threshold.state_dict(),
            "bank": self.bank.state_dict() if self.bank is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.threshold.load_state_dict(state["threshold"])
        if self.bank is not None and state.get("bank") is not None:
            self.bank.load_state_dict(state["bank"])


class Supervised(Algorithm):
    name = "supervised"

    def train_step(self, model, batch: Batch, step: int) -> StepResult:
        out_l, _, _ = self.forward(model, batch)
        loss = supervised_loss(out_l.logits, batch)
        return StepResult(loss, {"loss_sup": loss.detach()})


class FixMatch(Algorithm):
    """Sohn et al. 2020: pseudo-labels from the weak view's classifier above a fixed threshold
    supervise the strong view."""

    name = "fixmatch"

    def train_step(self, model, batch: Batch, step: int) -> StepResult:
        out_l, out_uw, out_us = self.forward(model, batch)
        loss = supervised_loss(out_l.logits, batch)
        logs: dict[str, torch.Tensor | float] = {"loss_sup": loss.detach()}
        probs = pseudo = mask = None
        ramp = self.unlabeled_weight(step)
        if out_uw is not None:
            assert out_us is not None  # forward splits off the weak and strong views together
            with torch.no_grad():
                probs = self.pseudo_label_probs(model, batch, out_uw)
                self.threshold.update(probs)
            pseudo, _conf, mask = passes(probs, self.thresholds())
            loss_u = masked_cross_entropy(out_us.logits, pseudo, mask)
            loss = loss + ramp * self.config.lambda_u * loss_u
            logs.update(loss_u=loss_u.detach(), mask_rate=mask.float().mean().detach())
        extra, extra_logs = self.extra_losses((out_l, out_uw, out_us), batch, probs, pseudo, mask, ramp)
        logs.update(extra_logs)
        return StepResult(loss + extra, logs)

    def pseudo_label_probs(self, model, batch: Batch, out_uw: HeadOutput) -> torch.Tensor:
        """Where pseudo-labels come from: FixMatch's own weak-view prediction."""
        return out_uw.logits.detach().softmax(dim=1)

    def extra_losses(self, outs, batch: Batch, probs, pseudo, mask, ramp: float) -> tuple[torch.Tensor, dict]:
        """Terms added to FixMatch's two: LEAF's where its modules are on."""
        if not self.leaf:
            return outs[0].logits.sum() * 0.0, {}
        return self.leaf_losses(outs, batch.y_l, probs, pseudo, mask, ramp)


UNRUN_INSTANCE_WARMUP = 300  # instance_warmup "auto" outside a run, where no step count is known


class SITFER(Algorithm):
    """Semantic + instance + text pseudo-labels, fused; text co-supervision on labeled faces;
    class-wise dynamic thresholds; selective negative learning below threshold."""

    name = "sitfer"

    def __init__(
        self,
        config: MethodConfig,
        num_classes: int,
        class_text: torch.Tensor | None,
        bank_size: int,
        embed_dim: int,
        device: torch.device,
    ):
        super().__init__(config, num_classes, class_text, bank_size, embed_dim, device)
        if config.use_text and class_text is None:
            raise ValueError("the text level needs class text embeddings")
        if not (config.use_semantic or config.use_text or config.use_instance):
            raise ValueError("sitfer needs at least one level (semantic, text or instance)")
        self.levels = tuple(
            name
            for name, on in (
                ("semantic", config.use_semantic),
                ("text", config.use_text),
                ("instance", config.use_instance),
            )
            if on
        )
        if config.use_instance:
            self.bank = MemoryBank(bank_size, embed_dim, num_classes, config.instance_top_k, device)
        self.confidence_var = 1.0 / num_classes  # running variance of pseudo-label confidences
        # A run resolves "auto" from its steps (TrainSettings.resolved); built without a run
        # (tests, benchmarks that make the algorithm themselves) it keeps the former default.
        self.instance_warmup = UNRUN_INSTANCE_WARMUP if config.instance_warmup is None else config.instance_warmup

    def _make_threshold(self):
        return _class_thresholds(self.config, self.num_classes, self.traits)

    def instance_active(self, step: int) -> bool:
        return self.bank is not None and step >= self.instance_warmup

    def _text_logits(self, projected: torch.Tensor) -> torch.Tensor:
        if self.class_text is None:  # __init__ refuses use_text without it; a config changed later lands here
            raise ValueError("the text level needs class text embeddings")
        return text_logits(projected, self.class_text, self.config.text_tau)

    @torch.no_grad()
    def level_probs(self, out: HeadOutput, step: int, exclude: torch.Tensor | None = None) -> LevelProbs:
        c = self.config
        semantic = out.logits.softmax(dim=1)
        text = self._text_logits(out.projected).softmax(dim=1) if c.use_text else None
        instance = None
        if self.bank is not None and (self.instance_active(step) or (not c.use_semantic and not c.use_text)):
            instance = self.bank.probs(out.embedding, c.instance_tau, exclude)
        fused = (
            fuse(semantic if c.use_semantic else None, text, instance, c.weights)
            if (c.use_semantic or text is not None or instance is not None)
            else semantic
        )
        return LevelProbs(semantic, text, instance, fused)

    @torch.no_grad()
    def _reference_outputs(
        self, model, batch: Batch, out_l: HeadOutput, out_uw: HeadOutput | None
    ) -> tuple[HeadOutput, HeadOutput | None]:
        """The outputs pseudo-labels and the bank come from: the EMA teacher's (steadier, and
        the same model that is evaluated and writes predictions) or the student's own. With the
        flip ensemble, the weak view and its mirror are merged (mean logits, mean embedding),
        so every level, the instance level included, is computed once per face."""
        c = self.config
        alt = batch.x_uw_alt if (c.flip_ensemble and out_uw is not None) else None
        if c.teacher_pseudo_labels and self.teacher is not None:
            parts = [p for p in (batch.x_l, batch.x_uw if out_uw is not None else None, alt) if p is not None]
            ref_l, *ref_u = _split(self.teacher(torch.cat(parts)), [p.shape[0] for p in parts])
            ref_uw = ref_u[0] if ref_u else None
            mirror = ref_u[1] if alt is not None else None
        else:
            ref_l = _detached(out_l)
            ref_uw = _detached(out_uw) if out_uw is not None else None
            mirror = model(alt) if alt is not None else None
        if mirror is not None:
            assert ref_uw is not None  # a mirror (alt) is only taken where there is a weak view
            ref_uw = HeadOutput(
                normalize(ref_uw.embedding + mirror.embedding),
                (ref_uw.logits + mirror.logits) / 2,
                normalize(ref_uw.projected + mirror.projected),
            )
        return ref_l, ref_uw

    def _pseudo_weights(self, confidence: torch.Tensor, pseudo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """1 at or above the class threshold; below it, SoftMatch's Gaussian fall-off with the
        running spread of confidences, so near misses still teach a little."""
        if not self.config.soft_weighting:
            return mask.float()
        m = self.config.dta_momentum
        self.confidence_var = m * self.confidence_var + (1 - m) * confidence.float().var().item()
        gap = (self.thresholds().to(confidence.device)[pseudo] - confidence).clamp(min=0)
        return torch.exp(-(gap.float() ** 2) / (2 * max(self.confidence_var, 1e-6)))

    def train_step(self, model, batch: Batch, step: int) -> StepResult:
        c = self.config
        out_l, out_uw, out_us = self.forward(model, batch)
        loss_sup = supervised_loss(out_l.logits, batch)
        logs: dict[str, torch.Tensor | float] = {"loss_sup": loss_sup.detach()}
        loss = loss_sup
        if c.use_text:
            loss_text = supervised_loss(self._text_logits(out_l.projected), batch)
            loss = loss + c.lambda_text * loss_text
            logs["loss_text"] = loss_text.detach()
        ref_l, ref_uw = self._reference_outputs(model, batch, out_l, out_uw)
        if self.bank is not None:
            self.bank.update(batch.idx_l, ref_l.embedding, batch.y_l)
        if out_uw is None:
            return StepResult(loss, logs)
        # forward splits off both unlabeled views together, and the reference weak view comes with them
        assert out_us is not None and ref_uw is not None

        with torch.no_grad():
            levels = self.level_probs(ref_uw, step, exclude=batch.idx_u)
            self.threshold.update(levels.fused)
            pseudo, confidence, mask = passes(levels.fused, self.thresholds())
            weight = self._pseudo_weights(confidence, pseudo, mask)
        loss_u = masked_cross_entropy(out_us.logits, pseudo, weight)
        if c.use_text:  # the strong view's projection learns the fused pseudo-label too
            loss_u = loss_u + masked_cross_entropy(self._text_logits(out_us.projected), pseudo, weight)
        ramp = self.unlabeled_weight(step)
        loss = loss + ramp * c.lambda_u * loss_u
        logs.update(loss_u=loss_u.detach(), mask_rate=mask.float().mean().detach())
        if c.negative_learning:
            loss_neg = negative_learning_loss(out_us.logits, levels.fused, ~mask, c.snl_gamma)
            loss = loss + ramp * c.lambda_neg * loss_neg
            logs["loss_neg"] = loss_neg.detach()
        if self.leaf:
            extra, leaf_logs = self.leaf_losses((out_l, out_uw, out_us), batch.y_l, levels.fused, pseudo, mask, ramp)
            loss = loss + extra
            logs.update(leaf_logs)
        if self.bank is not None and step >= self.instance_warmup:
            if batch.idx_u is None:
                raise ValueError("the instance level needs the unlabeled faces' bank slots (Batch.idx_u)")
            # Confident pseudo-labels join the bank; faces that fell below leave it.
            self.bank.update(batch.idx_u, ref_uw.embedding, torch.where(mask, pseudo, -1))
            logs["bank_size"] = (self.bank.labels >= 0).sum().float()
        return StepResult(loss, logs)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "confidence_var": self.confidence_var}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.confidence_var = float(state.get("confidence_var", self.confidence_var))


class _TeacherFixMatch(FixMatch):
    """FixMatch whose pseudo-labels come from the EMA teacher (--no-teacher-pseudo-labels:
    from the student, as FixMatch)."""

    def pseudo_label_probs(self, model, batch: Batch, out_uw: HeadOutput) -> torch.Tensor:
        if self.config.teacher_pseudo_labels and self.teacher is not None:
            return self.teacher(batch.x_uw).logits.float().softmax(dim=1)
        return super().pseudo_label_probs(model, batch, out_uw)


class LEAF(_TeacherFixMatch):
    """LEAF (seeds/001) on FixMatch's skeleton: the EMA teacher's weak-view prediction is the
    pseudo-label (hard above the threshold); below it the category level takes the ambiguous
    prediction as positive and negative sets; gated experts aggregate the semantic and
    instance levels. Each part has its flag (--no-leaf-category, --no-leaf-semantic-experts ...)."""

    name = "leaf"
    always_leaf = True


class DTASNL(_TeacherFixMatch):
    """DTA-SNL (seeds/002): an EMA teacher labels the weak view; dynamic per-class thresholds
    (DTA) decide which pseudo-labels count; faces below threshold teach through complementary
    labels (SNL); labeled batches are class-balanced; in fine-tune mode the encoder's feature
    map goes through local attention enhancement and random region dropout
    (core/ssl/spatial.py). --no-dynamic-threshold, --no-negative-learning,
    --no-balanced-sampling, --no-local-attention and --region-dropout 0 take each part away."""

    name = "dta-snl"

    def _make_threshold(self):
        return _class_thresholds(self.config, self.num_classes, self.traits)

    def extra_losses(self, outs, batch: Batch, probs, pseudo, mask, ramp: float) -> tuple[torch.Tensor, dict]:
        total, logs = super().extra_losses(outs, batch, probs, pseudo, mask, ramp)
        if self.config.negative_learning and outs[2] is not None:
            loss_neg = negative_learning_loss(outs[2].logits, probs, ~mask, self.config.snl_gamma)
            total = total + ramp * self.config.lambda_neg * loss_neg
            logs["loss_neg"] = loss_neg.detach()
        return total, logs


def _class_thresholds(
    config: MethodConfig, num_classes: int, traits: AlgorithmTraits
) -> DynamicThresholds | FixedThreshold:
    """Dynamic per-class thresholds (DTA) where --dynamic-threshold or the algorithm says so."""
    if traits.dynamic_threshold if config.dynamic_threshold is None else config.dynamic_threshold:
        return DynamicThresholds(num_classes, config.dta_momentum, config.dta_floor, config.dta_ceiling)
    return FixedThreshold(num_classes, config.threshold)


def _detached(out: HeadOutput) -> HeadOutput:
    return HeadOutput(out.embedding.detach(), out.logits.detach(), out.projected.detach())


def _split(out: HeadOutput, sizes: list[int]) -> list[HeadOutput]:
    parts = [t.split(sizes) for t in (out.embedding, out.logits, out.projected)]
    aux = {key: value.split(sizes) for key, value in out.aux.items()}
    return [
        HeadOutput(parts[0][i], parts[1][i], parts[2][i], {key: value[i] for key, value in aux.items()})
        for i in range(len(sizes))
    ]


def registry(*classes: type[Algorithm]) -> dict[str, type[Algorithm]]:
    """The factories by name, in the spec's order: a class whose name has no spec, a spec with no
    class, or a name given twice is an error here, when this module is imported."""
    names = [cls.name for cls in classes]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    without_spec = sorted(set(names) - set(ALGORITHM_NAMES))
    without_factory = [name for name in ALGORITHM_NAMES if name not in names]
    if duplicated or without_spec or without_factory:
        problems = [
            f"{label}: {', '.join(found)}"
            for label, found in (
                ("registered twice", duplicated),
                ("no spec in core/ssl/spec.py", without_spec),
                ("no algorithm class", without_factory),
            )
            if found
        ]
        raise ValueError("algorithms and their specs disagree; " + "; ".join(problems))
    by_name = {cls.name: cls for cls in classes}
    return {name: by_name[name] for name in ALGORITHM_NAMES}


ALGORITHMS: dict[str, type[Algorithm]] = registry(Supervised, FixMatch, SITFER, LEAF, DTASNL)


def create_algorithm(name: str, config: MethodConfig, **kwargs) -> Algorithm:
    algorithm_spec(name)  # an unknown name: the spec's error, which lists the choices
    return ALGORITHMS[name](config, **kwargs)
