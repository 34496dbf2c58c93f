"""Cached face thumbnails (PNG files in the project's thumbnails/ folder), built with Pillow.

Qt-free so the CLI, the exporter and the studio share one cache; the studio loads the files
off its GUI thread.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image, ImageOps

from core.ingest.imageio import load_face
from core.paths import studio_home
from core.store.project import Project
from core.store.queries import FaceRow

DEFAULT_THUMB_SIZE = 96


def thumbnail_path(project: Project, face_id: int, size: int = DEFAULT_THUMB_SIZE) -> Path:
    return project.cache_dir("thumbnails") / _relative(face_id, size)


def personal_thumbnail_path(project: Project, face_id: int, size: int = DEFAULT_THUMB_SIZE) -> Path:
    """Where the thumbnail goes when the project folder is read-only for this user (a team's
    shared folder that annotators may only read): their own cache, one folder per project."""
    key = hashlib.blake2b(str(project.root).encode(), digest_size=8).hexdigest()  # root: resolved at open
    return studio_home() / "cache" / "thumbnails" / key / _relative(face_id, size)


def _relative(face_id: int, size: int) -> Path:
    return Path(str(size)) / f"{face_id // 1000:04d}" / f"{face_id}.png"


def ensure_thumbnail(project: Project, face: FaceRow, size: int = DEFAULT_THUMB_SIZE) -> Path:
    """The thumbnail file of `face`, made first if missing: in the project's cache, or in the
    user's own where the project folder cannot be written. Raises ImageProblem for a bad source."""
    shared = thumbnail_path(project, face.id, size)
    if shared.is_file():  # the usual case: looked up first, nothing else computed
        return shared
    personal = personal_thumbnail_path(project, face.id, size)
    if personal.is_file():
        return personal
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
    try:
        return _write(image, shared)
    except OSError:  # read-only for this user (or a read-only file system): keep it for them alone
        return _write(image, personal)


def _write(image: Image.Image, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.{id(image)}.tmp")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
