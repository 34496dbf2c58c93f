"""The settings of the methods and their ranges, without torch: the studio's training form, the
command-line parser and run validation read them before (or without) loading a model. What each
algorithm is and prefers is its spec (core/ssl/spec.py); core/ssl/algorithms.py holds the
algorithms themselves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields


class SettingError(ValueError):
    """A setting out of its range. `name` is the field: the command line shows it as its flag,
    the studio's form as it is."""

    def __init__(self, name: str, value, problem: str):
        self.name, self.value, self.problem = name, value, problem
        super().__init__(f"{name} {show_value(value)}: {problem}")


def show_value(value) -> str:
    """A value as the user typed it: 2 rather than 2.0, weights as 1,0.5,1."""
    if isinstance(value, (tuple, list)):
        return ",".join(show_value(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Range:
    """Where a numeric setting may lie; NaN and infinities never do."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound itself is outside
    high_open: bool = False
    integer: bool = False
    optional: bool = False  # None allowed (the algorithm's choice)

    def check(self, name: str, value) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            raise SettingError(name, value, "must be a whole number" if self.integer else "must be a number")
        if not math.isfinite(value):
            raise SettingError(name, value, "must be a finite number")
        below = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        above = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        if below or above:
            raise SettingError(name, value, self.describe())

    def describe(self) -> str:
        low, high = (None if b is None else show_value(float(b)) for b in (self.low, self.high))
        if high is None:
            if self.low_open:
                return "must be a positive number" if self.low == 0 else f"must be more than {low}"
            return f"must be {low} or more"
        excluded = [bound for bound, out in ((low, self.low_open), (high, self.high_open)) if out]
        if excluded:
            return f"must be between {low} and {high}, {'both' if len(excluded) == 2 else excluded[0]} excluded"
        return f"must be between {low} and {high}"


def check_ranges(config, ranges: dict[str, Range]) -> None:
    for name, allowed in ranges.items():
        allowed.check(name, getattr(config, name))


POSITIVE, NON_NEGATIVE = Range(0, low_open=True), Range(0)
COUNT, AT_LEAST_ONE = Range(0, integer=True), Range(1, integer=True)
FRACTION = Range(0, 1, high_open=True)  # [0, 1)
LEVELS = ("semantic", "text", "instance")


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
    # Steps before pseudo-labeled faces join the bank and the fusion; None: auto, a share of the
    # run's steps (core/training/settings.py auto_schedule).
    instance_warmup: int | None = None
    threshold: float = 0.95  # the fixed threshold (fixmatch, leaf; sitfer and dta-snl without DTA)
    dynamic_threshold: bool | None = None  # DTA; None: the algorithm's choice (spec.AlgorithmTraits)
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
        """SettingError (a ValueError) naming the first setting out of its range."""
        check_ranges(self, METHOD_RANGES)
        if self.dta_floor > self.dta_ceiling:
            raise SettingError("dta_floor", self.dta_floor, f"must not be above the ceiling ({self.dta_ceiling})")
        self._check_weights()

    def _check_weights(self) -> None:
        if not isinstance(self.weights, (tuple, list)) or len(self.weights) != 3:
            raise SettingError("weights", self.weights, "must be three numbers (semantic, text, instance)")
        for level, weight in zip(LEVELS, self.weights):
            try:
                NON_NEGATIVE.check("weights", weight)
            except SettingError as exc:
                raise SettingError("weights", self.weights, f"the {level} weight {exc.problem}") from None
        used = [(level, w) for level, w, on in zip(LEVELS, self.weights, self.levels_on()) if on]
        if not used:
            raise ValueError("no level is on: turn on at least one of semantic, text and instance")
        if not any(w > 0 for _, w in used):
            raise SettingError(
                "weights",
                self.weights,
                f"the levels in use ({', '.join(level for level, _ in used)}) need at least one positive weight",
            )
        # Until the instance level's warm-up ends only the other levels are fused (core/ssl/algorithms.py).
        early = [(level, w) for level, w in used if level != "instance"]
        if self.use_instance and self.instance_warmup != 0 and early and not any(w > 0 for _, w in early):
            warmup = (
                "its warm-up (a share of the steps)"
                if self.instance_warmup is None
                else f"{self.instance_warmup} warm-up steps"
            )
            raise SettingError(
                "weights",
                self.weights,
                f"the instance level joins after {warmup}; "
                f"until then {' and '.join(level for level, _ in early)} "
                f"need a positive weight",
            )

    def levels_on(self) -> tuple[bool, bool, bool]:
        return self.use_semantic, self.use_text, self.use_instance

    @classmethod
    def from_dict(cls, values: dict) -> MethodConfig:
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


# Every numeric MethodConfig field but the weights (tests/test_train_validation.py checks none is missed).
METHOD_RANGES: dict[str, Range] = {
    "text_tau": POSITIVE,
    "instance_tau": POSITIVE,
    "instance_top_k": AT_LEAST_ONE,
    "instance_warmup": Range(0, integer=True, optional=True),
    "unlabeled_rampup": COUNT,
    "threshold": Range(0, 1, low_open=True),  # 0 would pass every pseudo-label
    "dta_momentum": FRACTION,
    "dta_floor": Range(0, 1, low_open=True),
    "dta_ceiling": Range(0, 1, low_open=True),
    "snl_gamma": Range(0, 1, low_open=True, high_open=True),
    **{
        name: NON_NEGATIVE
        for name in (
            "lambda_text",
            "lambda_u",
            "lambda_neg",
            "lambda_balance",
            "lambda_decouple",
            "lambda_category",
            "lambda_consistency",
            "lambda_contrast",
        )
    },
    "leaf_relevant_experts": AT_LEAST_ONE,
    "leaf_agnostic_experts": COUNT,
    "leaf_cumulative": Range(0, 1, low_open=True),
    "region_dropout": Range(0, 1, high_open=True, optional=True),
    "region_grid": AT_LEAST_ONE,
}


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


def spatial_options(
    local_attention: bool | None, region_dropout: float | None, region_grid: int, algorithm_default: bool, mode: str
) -> SpatialOptions:
    """Resolves the flags: None means the algorithm's default in fine-tune mode and off in head
    mode; an explicit request in head mode is an error."""
    if mode != "finetune":
        if local_attention or (region_dropout or 0) > 0:
            raise SpatialModeError(
                "local attention and region dropout work on the encoder's spatial feature map, which head "
                "mode does not compute (it trains on cached pooled features): use --mode finetune, or turn "
                "them off with --no-local-attention --region-dropout 0"
            )
        return SpatialOptions(False, 0.0, region_grid)
    attention = algorithm_default if local_attention is None else local_attention
    dropout = (REGION_DROPOUT_DEFAULT if algorithm_default else 0.0) if region_dropout is None else region_dropout
    return SpatialOptions(bool(attention), float(dropout), region_grid)
