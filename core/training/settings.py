"""Everything a training run is started with; stored with the run so it can be resumed.

Steps, the validation and checkpoint cadence and the instance level's warm-up may be left to the
data (None: "auto"): `TrainSettings.resolved(labeled, unlabeled)` turns them into numbers from the
counts of labeled and unlabeled train faces (`auto_steps`, `auto_schedule`), and a run records
the numbers it used. How the formula was chosen: docs/benchmarks.md, "Default step count".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from core.encoders import check_spec
from core.ssl.config import (
    AT_LEAST_ONE,
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    MethodConfig,
    Range,
    SettingError,
    SpatialOptions,
    check_ranges,
    spatial_options,
)
from core.ssl.spec import DEFAULT_ALGORITHM, algorithm_spec, algorithm_traits

MODES = ("head", "finetune")
PROJECTIONS = ("umap", "pca", "none")


# -- schedules that scale with the data ------------------------------------------------------------
AUTO_STEPS_FLOOR = 200  # the demo (70 labeled, 630 unlabeled faces) reached most of its accuracy here
AUTO_STEPS_CAP = 2000  # FER2013's 27,485 train faces: the benchmarks' step count
AUTO_UNLABELED_PASSES = 20  # passes over the unlabeled train faces
AUTO_LABELED_PASSES = 100  # passes over the labeled ones (a supervised run draws only those)
AUTO_STEPS_ROUNDING = 50
VALIDATIONS_PER_RUN = 8  # eval_every: about an eighth of the run
CHECKPOINTS_PER_RUN = 4
INSTANCE_WARMUP_SHARE = 0.2  # the instance level joins after a fifth of the run (300 of 1,500 before)


def auto_steps(labeled: int, unlabeled: int, batch_size: int = 64, unlabeled_ratio: int = 3) -> int:
    """Steps for a run on this many labeled and unlabeled train faces: enough batches to pass
    over each unlabeled face AUTO_UNLABELED_PASSES times (and each labeled one
    AUTO_LABELED_PASSES times), rounded up to 50, between AUTO_STEPS_FLOOR and AUTO_STEPS_CAP."""
    unlabeled_per_step = batch_size * unlabeled_ratio
    needed = max(
        AUTO_UNLABELED_PASSES * unlabeled / unlabeled_per_step if unlabeled_per_step else 0.0,
        AUTO_LABELED_PASSES * labeled / max(batch_size, 1),
    )
    rounded = math.ceil(needed / AUTO_STEPS_ROUNDING) * AUTO_STEPS_ROUNDING
    return int(min(AUTO_STEPS_CAP, max(AUTO_STEPS_FLOOR, rounded)))


@dataclass(frozen=True)
class Schedule:
    """The numbers a run of `steps` steps uses where its settings say "auto"."""

    eval_every: int
    checkpoint_every: int
    instance_warmup: int


@dataclass(frozen=True)
class Cadence:
    """A run's length and how often the loop's hooks act, with every "auto" resolved
    (LoopConfig.cadence): what the Trainer and its hooks count by."""

    steps: int
    log_every: int
    eval_every: int
    checkpoint_every: int


def auto_schedule(steps: int) -> Schedule:
    return Schedule(
        eval_every=max(1, round(steps / VALIDATIONS_PER_RUN)),
        checkpoint_every=max(1, round(steps / CHECKPOINTS_PER_RUN)),
        instance_warmup=round(steps * INSTANCE_WARMUP_SHARE),
    )


@dataclass
class LoopConfig:
    steps: int | None = None  # None: auto, from the number of train faces (auto_steps)
    batch_size: int = 64
    unlabeled_ratio: int = 3  # unlabeled faces per labeled face in a batch (FixMatch's mu)
    lr: float = 1e-3
    weight_decay: float = 5e-4
    ema_decay: float = 0.99
    eval_every: int | None = None  # None: about an eighth of the steps
    checkpoint_every: int | None = None  # None: a quarter of the steps
    log_every: int = 20
    seed: int = 0
    feature_dropout: float = 0.3  # head mode: part of the strong view
    balanced_sampling: bool | None = None  # labeled faces drawn class-balanced; None: the algorithm's choice
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU

    def validate(self) -> None:
        """SettingError (a ValueError) naming the first setting out of its range."""
        check_ranges(self, LOOP_RANGES)

    def with_schedule(self) -> LoopConfig:
        """This config with the cadences left to "auto" filled in from `steps` (which must be set:
        `TrainSettings.resolved` chooses it from the data)."""
        cadence = self.cadence()
        return replace(self, eval_every=cadence.eval_every, checkpoint_every=cadence.checkpoint_every)

    def cadence(self) -> Cadence:
        """The steps and cadences `with_schedule` fills in, as numbers that are never "auto"."""
        if self.steps is None:
            raise ValueError("steps is 'auto': choose it from the data first (TrainSettings.resolved)")
        schedule = auto_schedule(self.steps)
        return Cadence(
            steps=self.steps,
            log_every=self.log_every,
            eval_every=self.eval_every or schedule.eval_every,
            checkpoint_every=self.checkpoint_every or schedule.checkpoint_every,
        )

    @classmethod
    def from_dict(cls, values: dict) -> LoopConfig:
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


# Every numeric field (tests/test_train_validation.py checks none is missed).
AUTO_OR_AT_LEAST_ONE = Range(1, integer=True, optional=True)
LOOP_RANGES: dict[str, Range] = {
    **{name: AUTO_OR_AT_LEAST_ONE for name in ("steps", "eval_every", "checkpoint_every")},
    **{name: AT_LEAST_ONE for name in ("batch_size", "log_every")},
    "unlabeled_ratio": COUNT,
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "ema_decay": FRACTION,
    "seed": Range(0, 2**32 - 1, integer=True),  # numpy's and UMAP's seeds are 32-bit
    "feature_dropout": FRACTION,
}
SETTINGS_RANGES: dict[str, Range] = {
    "strong_views": Range(0, 16, integer=True),
    "loader_workers": Range(0, 64, integer=True),
}


@dataclass
class TrainSettings:
    algorithm: str = DEFAULT_ALGORITHM
    encoder: str = "offline"
    mode: str = "head"
    device: str | None = None  # None: CUDA if available, else CPU
    method: MethodConfig = field(default_factory=MethodConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    strong_views: int = 2  # head mode: strongly augmented views cached per face (each costs one encoder pass)
    loader_workers: int = 2  # fine-tune mode: image-decoding processes per training process
    projection: str = "umap"
    descriptions: str | None = None  # a descriptions JSON replacing core/resources/descriptions.json
    # Head mode: the face mesh's geometry joins the image features (core/training/geometry.py);
    # on by default: +2.2 to +3.7 points for supervised, fixmatch and sitfer on FER2013, 30 of 30
    # seed pairs ahead (docs/benchmarks.md, "Face geometry").
    geometry: bool = True
    # Each labeled train face's target is its annotators' vote shares, frozen at the run's start
    # (core/training/soft_labels.py); faces without votes keep the one-hot of their label.
    soft_labels: bool = False

    def validate(self) -> None:
        algorithm_spec(self.algorithm)  # a clear error for an unknown name
        check_spec(self.encoder)
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"unknown projection {self.projection!r}; choose one of {', '.join(PROJECTIONS)}")
        check_ranges(self, SETTINGS_RANGES)
        if not isinstance(self.soft_labels, bool):  # a studio or server request's JSON could say "yes"
            raise SettingError("soft_labels", self.soft_labels, "must be true or false")
        self.method.validate()
        self.loop.validate()
        self.spatial()  # fails now, not after feature extraction, if head mode is asked for maps

    def spatial(self) -> SpatialOptions:
        """DTA-SNL's feature-map modules as this run uses them (an error in head mode if asked for)."""
        m = self.method
        return spatial_options(
            m.local_attention,
            m.region_dropout,
            m.region_grid,
            algorithm_traits(self.algorithm).spatial_modules,
            self.mode,
        )

    @property
    def uses_geometry(self) -> bool:
        """Geometry is read in head mode only: fine-tune mode trains on the images alone."""
        return self.geometry and self.mode == "head"

    def balanced_sampling(self) -> bool:
        """--balanced-sampling / --no-balanced-sampling, else what the algorithm prefers."""
        chosen = self.loop.balanced_sampling
        return algorithm_traits(self.algorithm).balanced_sampling if chosen is None else chosen

    def resolved(self, labeled: int, unlabeled: int) -> TrainSettings:
        """A copy with every "auto" number chosen for this many labeled and unlabeled train faces
        (what a run records); numbers the user set stay as they are."""
        loop = self.loop
        if loop.steps is None:
            uses_unlabeled = algorithm_traits(self.algorithm).uses_unlabeled
            loop = replace(
                loop,
                steps=auto_steps(labeled, unlabeled if uses_unlabeled else 0, loop.batch_size, loop.unlabeled_ratio),
            )
        loop = loop.with_schedule()
        method = self.method
        if method.instance_warmup is None:
            method = replace(method, instance_warmup=auto_schedule(loop.cadence().steps).instance_warmup)
        return replace(self, loop=loop, method=method)

    def level_warnings(self) -> list[str]:
        """Levels that are ticked but cannot appear in a run with these (resolved) settings, in
        words, for the training form before Start and for `train`."""
        steps, warmup = self.loop.steps, self.method.instance_warmup
        if not (algorithm_traits(self.algorithm).instance_level and self.method.use_instance):
            return []
        if steps is None or warmup is None:
            return []
        if warmup >= steps:
            return [
                f"the instance level cannot appear in this run: its warm-up ({warmup:,} steps) is not "
                f"shorter than the run ({steps:,} steps); lower --instance-warmup or leave it to auto"
            ]
        return []

    def to_dict(self) -> dict:
        data = asdict(self)
        data["method"] = self.method.to_dict()
        data["loop"] = self.loop.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainSettings:
        data = dict(data)
        data.setdefault("geometry", False)  # runs recorded before it existed trained without it
        method = MethodConfig.from_dict(data.pop("method", {}))
        loop = LoopConfig.from_dict(data.pop("loop", {}))
        return cls(method=method, loop=loop, **data)
