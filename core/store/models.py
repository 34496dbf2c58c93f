"""SQLAlchemy 2 typed models of a project's database.

Labels and classes are stored as canonical class names (see core/classes.py), so the database
reads on its own and survives a change of class order. Probability vectors are JSON lists in
class order (core/resources/classes.json), which works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC and read back timezone-aware on every backend (SQLite keeps none)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use core.store.models.utcnow()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON}


# Image status values.
STATUS_ACTIVE = "active"
STATUS_EXCLUDED = "excluded"  # an annotator said: not a usable face
STATUS_MISSING = "missing"  # the file is gone from disk

# Label sources.
SOURCE_IMPORTED = "imported"  # ground truth that came with the data
SOURCE_ANNOTATOR = "annotator"  # set or confirmed by a person in the studio or CLI

SPLITS = ("train", "val", "test")

# Run status values.
RUN_QUEUED, RUN_RUNNING, RUN_FINISHED, RUN_FAILED, RUN_CANCELLED = (
    "queued",
    "running",
    "finished",
    "failed",
    "cancelled",
)

# Run kinds: trained by a user (`train`, the studio's Start) or refitted from a parent run.
RUN_KIND_TRAIN, RUN_KIND_REFIT = "train", "refit"


class Meta(Base):
    """Key/value facts about the database itself (schema version, creation time)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ImportBatch(Base):
    """One run of the importer: where faces came from, with what options, and its report."""

    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    imported: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Image(Base):
    """One face. A photo with several faces gives several rows sharing content_hash.

    `path` is the source file (relative to the project folder when inside it); `face_*` is the
    face box in the upright (EXIF-rotated) source image, or NULL where the file is itself a
    crop. `crop_path` caches the cropped face for detected faces, turned by `face_angle`.
    """

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("content_hash", "face_index", name="uq_image_content_face"),
        Index("ix_images_split_status", "split", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    face_index: Mapped[int] = mapped_column(default=0)
    width: Mapped[int]
    height: Mapped[int]
    face_x: Mapped[int | None]
    face_y: Mapped[int | None]
    face_w: Mapped[int | None]
    face_h: Mapped[int | None]
    # From the detector: degrees the crop was turned to level the eyes (NULL or 0: not turned),
    # the key points in source pixels ([[x, y], ...], landmarks.KEYPOINTS order), its name and score.
    face_angle: Mapped[float | None]
    face_keypoints: Mapped[list[Any] | None] = mapped_column(JSON)
    face_detector: Mapped[str | None] = mapped_column(String(16))
    face_score: Mapped[float | None]
    crop_path: Mapped[str | None] = mapped_column(Text)
    source_format: Mapped[str | None] = mapped_column(String(16))
    source_mode: Mapped[str | None] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(8), default="train")
    status: Mapped[str] = mapped_column(String(16), default=STATUS_ACTIVE)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    label: Mapped[Label | None] = relationship(back_populates="image", uselist=False)

    @property
    def face_box(self) -> tuple[int, int, int, int] | None:
        x, y, w, h = self.face_x, self.face_y, self.face_w, self.face_h
        if x is None or y is None or w is None or h is None:
            return None
        return (x, y, w, h)


class Label(Base):
    """The current label of a face (at most one). No row means unlabeled."""

    __tablename__ = "labels"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(32), index=True)
    source: Mapped[str] = mapped_column(String(16))
    annotator: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    image: Mapped[Image] = relationship(back_populates="label")


class HiddenTruth(Base):
    """True labels withheld by the semi-supervised protocol.

    For evaluation and for simulating an annotator only; the trainer never reads this table.
    """

    __tablename__ = "hidden_truth"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(32))


class Correction(Base):
    """Append-only log of annotators' votes: who said what of a face, and the face's label row
    before it (`old_*`). Undo sets `undone_at`, never deletes."""

    __tablename__ = "corrections"
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    old_label: Mapped[str | None] = mapped_column(String(32))
    new_label: Mapped[str | None] = mapped_column(String(32))
    suggestion: Mapped[str | None] = mapped_column(String(32))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True)  # a bulk step
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The newest correction's id when this one was undone (schema 5): a correction logged after
    # the undo has a higher id and ends the chance to redo it. Ids, not times: a clock that steps
    # back, or two corrections in one microsecond, cannot reorder the log.
    undone_after_id: Mapped[int | None]
    # The rest of the label row this correction replaced (schema 2), so that undo restores it
    # exactly: an imported label comes back as imported, with its annotator and time.
    old_source: Mapped[str | None] = mapped_column(String(16))
    old_annotator: Mapped[str | None] = mapped_column(String(64))
    old_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The adjudicator's final word on a face whose votes disagree (schema 6): it decides the
    # face's label over any majority until it is undone or its author votes again.
    adjudicated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Vote(Base):
    """An annotator's current label of a face (schema 6): the newest of their corrections of it
    that is not undone. Derived from the corrections log in the transaction that changes it (see
    core/team/votes.py), so undo, redo and agreement read votes without replaying the log.
    `label` None: the annotator said the face should have no label."""

    __tablename__ = "votes"
    __table_args__ = (Index("ix_votes_annotator", "annotator"),)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    annotator: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str | None] = mapped_column(String(32))
    adjudicated: Mapped[bool] = mapped_column(Boolean, default=False)
    correction_id: Mapped[int] = mapped_column(ForeignKey("corrections.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Run(Base):
    """A training run: what it ran with, where, and how it ended. A refit (schema 3) names the
    run it was warm-started from; once superseded, its per-face results may be pruned
    (`predictions_pruned_at`) while the row, its labeled set and its metrics stay."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    encoder: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16), default="head")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=RUN_QUEUED)
    device: Mapped[str | None] = mapped_column(String(32))
    pid: Mapped[int | None]
    host: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checkpoint: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), default=RUN_KIND_TRAIN, server_default=RUN_KIND_TRAIN)
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    predictions_pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RunLabel(Base):
    """The labeled set a run trained on, frozen at its start."""

    __tablename__ = "run_labels"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(32))


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_name_step", "run_id", "name", "step"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Prediction(Base):
    """A run's verdict on one face: each level's probabilities, the fused ones, the pseudo-label."""

    __tablename__ = "predictions"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    p_semantic: Mapped[list[Any] | None]
    p_text: Mapped[list[Any] | None]
    p_instance: Mapped[list[Any] | None]
    p_fused: Mapped[list[Any]]
    pseudo_label: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    passed_threshold: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict[str, Any] | None]  # algorithm-specific (e.g. LEAF's positive set)


class Embedding(Base):
    """A run's feature vector of one face (float32 bytes) and its 2-D map position."""

    __tablename__ = "embeddings"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    dim: Mapped[int | None]


class Projection(Base):
    """2-D coordinates of faces for the embedding map, per run and method (umap, pca)."""

    __tablename__ = "projections"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
