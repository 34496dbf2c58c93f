"""What a run trains on, read from the store at its start: faces by split with their current
labels. Hidden ground truth is never read here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.classes import class_names
from core.store.models import STATUS_ACTIVE, Image, Label
from core.store.project import Project


@dataclass
class FaceTable:
    """Parallel arrays over the active faces of a project, in id order."""

    ids: np.ndarray  # int64 face ids
    splits: np.ndarray  # str
    labels: np.ndarray  # int64 class index, -1 unlabeled
    paths: list[Path]
    crop_paths: list[Path | None]
    boxes: list[tuple[int, int, int, int] | None]
    angles: list[float | None]  # degrees each crop is turned to level the eyes (None: not turned)

    def __len__(self) -> int:
        return len(self.ids)

    def by_shard(self, rows: np.ndarray, shard_size: int) -> dict[int, list[int]]:
        """Positions into `rows` grouped by the cache shard their face id falls in (id // shard_size)."""
        groups: dict[int, list[int]] = {}
        for position, row in enumerate(rows):
            groups.setdefault(int(self.ids[row]) // shard_size, []).append(position)
        return groups

    def where(self, split: str | None = None, labeled: bool | None = None) -> np.ndarray:
        mask = np.ones(len(self.ids), dtype=bool)
        if split is not None:
            mask &= self.splits == split
        if labeled is True:
            mask &= self.labels >= 0
        elif labeled is False:
            mask &= self.labels < 0
        return np.flatnonzero(mask)


def load_face_table(project: Project, session: Session) -> FaceTable:
    index = {name: i for i, name in enumerate(class_names())}
    rows = session.execute(
        select(
            Image.id,
            Image.split,
            Image.path,
            Image.crop_path,
            Image.face_x,
            Image.face_y,
            Image.face_w,
            Image.face_h,
            Image.face_angle,
            Label.label,
        )
        .outerjoin(Label, Label.image_id == Image.id)
        .where(Image.status == STATUS_ACTIVE)
        .order_by(Image.id)
    ).all()
    return FaceTable(
        ids=np.array([r.id for r in rows], dtype=np.int64),
        splits=np.array([r.split for r in rows], dtype=object),
        labels=np.array([index.get(r.label, -1) for r in rows], dtype=np.int64),
        paths=[project.resolve_path(r.path) for r in rows],
        crop_paths=[project.resolve_path(r.crop_path) if r.crop_path else None for r in rows],
        boxes=[(r.face_x, r.face_y, r.face_w, r.face_h) if r.face_w is not None else None for r in rows],
        angles=[r.face_angle for r in rows],
    )
