"""The settings of the methods and what each algorithm prefers, without torch: the studio's
training form, the command-line parser and run validation read them before (or without)
loading a model. core/ssl/algorithms.py holds the algorithms themselves.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class AlgorithmTraits:
    """What an algorithm asks for where the user leaves a setting at None (its default)."""

    uses_unlabeled: bool = True
    balanced_sampling: bool = False  # class-balanced labeled batches (--balanced-sampling overrides)
    spatial_modules: bool = False  # DTA-SNL's feature-map modules in fine-tune mode (--local-attention overrides)
    dynamic_threshold: bool = False  # DTA's per-class thresholds (--dynamic-threshold overrides)


# One entry per algorithm of core/ssl/algorithms.py (a test checks both lists agree). sitfer's
# dynamic thresholds are off: on the dev split carved from FER2013 train (docs/benchmarks.md) a
# fixed threshold on the fused confidence won at both N. DTA-SNL is built on them.
ALGORITHM_TRAITS: dict[str, AlgorithmTraits] = {
    "supervised": AlgorithmTraits(uses_unlabeled=False),
    "fixmatch": AlgorithmTraits(),
    "sitfer": AlgorithmTraits(),
    "leaf": AlgorithmTraits(),
    "dta-snl": AlgorithmTraits(balanced_sampling=True, spatial_modules=True, dynamic_threshold=True),
}
ALGORITHM_NAMES = tuple(ALGORITHM_TRAITS)


def algorithm_traits(name: str) -> AlgorithmTraits:
    try:
        return ALGORITHM_TRAITS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHM_NAMES)}") from None


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
    threshold: float = 0.95  # the fixed threshold (fixmatch, leaf; sitfer and dta-snl without DTA)
    dynamic_threshold: bool | None = None  # DTA; None: the algorithm's choice (AlgorithmTraits)
    dta_momentum: float = 0.99
    dta_floor: float = 0.5
    dta_ceiling: float = 0.95
    negative_learning: bool = True
    snl_gamma: float = 0.05
    lambda_text: float = 1.0
    lambda_u: float = 1.0
    lambda_neg: float = 0.5
    unlabeled_rampup: int = 0  # steps over which lambda_u and lambda_neg grow linearly from 0
    # Where pseudo-labels come from (sitfer): the EMA teacher rather than the student, averaged
    # over the weak view and its mirror image, and weighted softly below the class threshold.
    teacher_pseudo_labels: bool = True
    flip_ensemble: bool = True
    soft_weighting: bool = False
    # LEAF (seeds/001): always on in `leaf`; --leaf-modules adds them to fixmatch and sitfer.
    leaf_modules: bool = False
    leaf_semantic_experts: bool = True  # gated experts in front of the classifier
    leaf_instance_experts: bool = True  # gated experts in front of the embedding
    leaf_relevant_experts: int = 2
    leaf_agnostic_experts: int = 2
    leaf_category: bool = True  # positive/negative sets for faces below threshold
    leaf_consistency: bool = True  # weak and strong views agree
    leaf_contrast: bool = True  # supervised contrastive term on the instance embedding
    leaf_cumulative: float = 0.8  # probability mass the positive set covers
    lambda_balance: float = 0.01
    lambda_decouple: float = 0.1
    lambda_category: float = 1.0
    lambda_consistency: float = 1.0
    lambda_contrast: float = 0.2
    # DTA-SNL (seeds/002), fine-tune mode only. None: on for dta-snl in fine-tune mode, off in
    # head mode (no feature maps there); asking for them in head mode is an error.
    local_attention: bool | None = None
    region_dropout: float | None = None  # chance of dropping each region of the feature map
    region_grid: int = 2  # regions per side

    def validate(self) -> None:
        for name in ("text_tau", "instance_tau"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        for name in ("lambda_text", "lambda_u", "lambda_neg", "instance_warmup", "unlabeled_rampup",
                     "lambda_balance", "lambda_decouple", "lambda_category", "lambda_consistency", "lambda_contrast",
                     "leaf_agnostic_experts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if len(self.weights) != 3 or any(w < 0 for w in self.weights):
            raise ValueError(f"weights must be three numbers >= 0 (semantic, text, instance), not {self.weights}")
        if not 0 < self.snl_gamma < 1:
            raise ValueError(f"snl_gamma must lie in (0, 1), not {self.snl_gamma}")
        if self.leaf_relevant_experts < 1:
            raise ValueError(f"leaf_relevant_experts must be at least 1, not {self.leaf_relevant_experts}")
        if not 0 < self.leaf_cumulative <= 1:
            raise ValueError(f"leaf_cumulative must lie in (0, 1], not {self.leaf_cumulative}")
        if self.region_dropout is not None and not 0 <= self.region_dropout < 1:
            raise ValueError(f"region_dropout must lie in [0, 1), not {self.region_dropout}")
        if self.region_grid < 1:
            raise ValueError(f"region_grid must be at least 1, not {self.region_grid}")

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


# -- DTA-SNL's feature-map modules (core/ssl/spatial.py): which a run uses -------------------------
REGION_DROPOUT_DEFAULT = 0.25  # dta-snl's default in fine-tune mode


@dataclass(frozen=True)
class SpatialOptions:
    local_attention: bool
    region_dropout: float
    region_grid: int

    @property
    def active(self) -> bool:
        return self.local_attention or self.region_dropout > 0


class SpatialModeError(ValueError):
    pass


def spatial_options(local_attention: bool | None, region_dropout: float | None, region_grid: int,
                    algorithm_default: bool, mode: str) -> SpatialOptions:
    """Resolves the flags: None means the algorithm's default in fine-tune mode and off in head
    mode; an explicit request in head mode is an error."""
    if mode != "finetune":
        if local_attention or (region_dropout or 0) > 0:
            raise SpatialModeError(
                "local attention and region dropout work on the encoder's spatial feature map, which head "
                "mode does not compute (it trains on cached pooled features): use --mode finetune, or turn "
                "them off with --no-local-attention --region-dropout 0")
        return SpatialOptions(False, 0.0, region_grid)
    attention = algorithm_default if local_attention is None else local_attention
    dropout = (REGION_DROPOUT_DEFAULT if algorithm_default else 0.0) if region_dropout is None else region_dropout
    return SpatialOptions(bool(attention), float(dropout), region_grid)
