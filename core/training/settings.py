"""Everything a training run is started with; stored with the run so it can be resumed."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from core.encoders import check_spec
from core.ssl.config import (
    AT_LEAST_ONE,
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    MethodConfig,
    Range,
    SpatialOptions,
    algorithm_traits,
    check_ranges,
    spatial_options,
)

MODES = ("head", "finetune")
PROJECTIONS = ("umap", "pca", "none")


@dataclass
class LoopConfig:
    steps: int = 1500
    batch_size: int = 64
    unlabeled_ratio: int = 3  # unlabeled faces per labeled face in a batch (FixMatch's mu)
    lr: float = 1e-3
    weight_decay: float = 5e-4
    ema_decay: float = 0.99
    eval_every: int = 100
    checkpoint_every: int = 500
    log_every: int = 20
    seed: int = 0
    feature_dropout: float = 0.3  # head mode: part of the strong view
    balanced_sampling: bool | None = None  # labeled faces drawn class-balanced; None: the algorithm's choice
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU

    def validate(self) -> None:
        """SettingError (a ValueError) naming the first setting out of its range."""
        check_ranges(self, LOOP_RANGES)

    @classmethod
    def from_dict(cls, values: dict) -> "LoopConfig":
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


# Every numeric field (tests/test_train_validation.py checks none is missed).
LOOP_RANGES: dict[str, Range] = {
    **{name: AT_LEAST_ONE for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "log_every")},
    "unlabeled_ratio": COUNT, "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "ema_decay": FRACTION,
    "seed": Range(0, 2**32 - 1, integer=True),  # numpy's and UMAP's seeds are 32-bit
    "feature_dropout": FRACTION,
}
SETTINGS_RANGES: dict[str, Range] = {
    "strong_views": Range(0, 16, integer=True), "loader_workers": Range(0, 64, integer=True),
}


@dataclass
class TrainSettings:
    algorithm: str = "sitfer"
    encoder: str = "offline"
    mode: str = "head"
    device: str | None = None  # None: CUDA if available, else CPU
    method: MethodConfig = field(default_factory=MethodConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    strong_views: int = 2  # head mode: strongly augmented views cached per face (each costs one encoder pass)
    loader_workers: int = 2  # fine-tune mode: image-decoding processes per training process
    projection: str = "umap"
    descriptions: str | None = None  # a descriptions JSON replacing resources/descriptions.json

    def validate(self) -> None:
        algorithm_traits(self.algorithm)  # a clear error for an unknown name
        check_spec(self.encoder)
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"unknown projection {self.projection!r}; choose one of {', '.join(PROJECTIONS)}")
        check_ranges(self, SETTINGS_RANGES)
        self.method.validate()
        self.loop.validate()
        self.spatial()  # fails now, not after feature extraction, if head mode is asked for maps

    def spatial(self) -> SpatialOptions:
        """DTA-SNL's feature-map modules as this run uses them (an error in head mode if asked for)."""
        m = self.method
        return spatial_options(m.local_attention, m.region_dropout, m.region_grid,
                               algorithm_traits(self.algorithm).spatial_modules, self.mode)

    def balanced_sampling(self) -> bool:
        """--balanced-sampling / --no-balanced-sampling, else what the algorithm prefers."""
        chosen = self.loop.balanced_sampling
        return algorithm_traits(self.algorithm).balanced_sampling if chosen is None else chosen

    def to_dict(self) -> dict:
        data = asdict(self)
        data["method"] = self.method.to_dict()
        data["loop"] = self.loop.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSettings":
        data = dict(data)
        method = MethodConfig.from_dict(data.pop("method", {}))
        loop = LoopConfig.from_dict(data.pop("loop", {}))
        return cls(method=method, loop=loop, **data)
