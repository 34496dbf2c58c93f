"""Everything a training run is started with; stored with the run so it can be resumed."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.encoders import check_spec
from core.ssl.algorithms import ALGORITHMS, MethodConfig
from core.ssl.spatial import SpatialOptions, spatial_options
from core.training.loop import LoopConfig

MODES = ("head", "finetune")
PROJECTIONS = ("umap", "pca", "none")


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
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
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
                               ALGORITHMS[self.algorithm].prefers_spatial_modules, self.mode)

    def balanced_sampling(self) -> bool:
        """--balanced-sampling / --no-balanced-sampling, else what the algorithm prefers."""
        chosen = self.loop.balanced_sampling
        return ALGORITHMS[self.algorithm].prefers_balanced_sampling if chosen is None else chosen

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
