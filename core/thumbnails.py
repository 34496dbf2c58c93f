"""Cached face thumbnails (PNG files in the project's thumbnails/ folder), built with Pillow.

Qt-free so the CLI, the exporter and the studio share one cache; the studio loads the files
off its GUI thread.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps

from core.ingest.imageio import load_face
from core.store.project import Project
from core.store.queries import FaceRow

DEFAULT_THUMB_SIZE = 96


def thumbnail_path(project: Project, face_id: int, size: int = DEFAULT_THUMB_SIZE) -> Path:
    return project.cache_dir("thumbnails") / str(size) / f"{face_id // 1000:04d}" / f"{face_id}.png"


def ensure_thumbnail(project: Project, face: FaceRow, size: int = DEFAULT_THUMB_SIZE) -> Path:
    """The thumbnail file of `face`, made first if missing. Raises ImageProblem for a bad source."""
    target = thumbnail_path(project, face.id, size)
    if target.is_file():
        return target
    image = load_face(
        project.resolve_path(face.path),
        project.resolve_path(face.crop_path) if face.crop_path else None,
        face.box,
        face.angle,
    )
    # Small crops (48 px FER faces) are upscaled too, so the grid shows every face at one
    # size; non-square crops are padded, never stretched.
    image = ImageOps.pad(
        image,
        (size, size),
        Image.Resampling.LANCZOS if max(image.size) > size else Image.Resampling.BICUBIC,
        color=(128, 128, 128),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.{id(image)}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, target)
    return target
