"""Everything a training run is started with; stored with the run so it can be resumed."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from core.encoders import check_spec
from core.ssl.config import MethodConfig, SpatialOptions, algorithm_traits, spatial_options

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
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.unlabeled_ratio < 0:
            raise ValueError(f"unlabeled_ratio must be 0 or more, not {self.unlabeled_ratio}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, not {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be 0 or more, not {self.weight_decay}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), not {self.ema_decay}")
        if not 0 <= self.feature_dropout < 1:
            raise ValueError(f"feature_dropout must lie in [0, 1), not {self.feature_dropout}")

    @classmethod
    def from_dict(cls, values: dict) -> "LoopConfig":
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


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
        if not 0 <= self.loader_workers <= 64:
            raise ValueError(f"loader_workers must lie between 0 and 64, not {self.loader_workers}")
        if not 0 <= self.strong_views <= 16:
            raise ValueError(f"strong_views must lie between 0 and 16, not {self.strong_views}")
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
