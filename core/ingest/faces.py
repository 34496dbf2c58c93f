"""Finding faces in photos and cutting them out level.

The detector is MediaPipe's (core/ingest/landmarks.py: short range for portraits and full range
for small, distant faces, run together and merged); OpenCV's bundled Haar cascade is the fallback
where LiteRT or the model files are missing, and the caller says so. A face is cut as a square
around its box, grown by a margin, turned about its centre so the eyes are level.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import cv2.data  # the bundled cascades' folder (cv2's stubs only know it imported by name)
import numpy as np
from PIL import Image

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Detection runs on a copy no larger than this; boxes are scaled back to full resolution.
DETECT_MAX_SIDE = 1600
DEFAULT_MARGIN = 0.25
DETECTOR_LANDMARKS = "blazeface"
DETECTOR_HAAR = "haar"
# The landmark detector sees a copy no larger than this (it works on 128 or 192 px anyway); the
# copy bounds its letterbox's memory for a 64-megapixel photo.
LANDMARK_DETECT_MAX_SIDE = 1280
# A face whose box lies more than this share inside a face already kept is that face (a tile's
# half of a large face included).
SAME_FACE_OVERLAP = 0.5
# Photos larger than this (after the copy above) are also searched in overlapping square tiles of
# this side by the full-range detector, which misses faces under about a tenth of what it sees:
# a group photo's small faces.
TILE_SIDE = 512
TILE_OVERLAP = 128

_local = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    # One classifier per thread: CascadeClassifier is not safe to share across threads.
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        path = Path(cv2.data.haarcascades) / CASCADE_FILE
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise RuntimeError(f"OpenCV's face cascade could not be loaded from {path}")
        _local.cascade = cascade
    return cascade


def detect_faces(image: Image.Image, min_face_fraction: float = 0.06) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in `image` coordinates, largest first."""
    gray = np.asarray(image.convert("L"))
    height, width = gray.shape
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    if scale < 1.0:
        gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    min_side = max(20, int(min(gray.shape) * min_face_fraction))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side))
    boxes = [
        (int(round(x / scale)), int(round(y / scale)), int(round(w / scale)), int(round(h / scale)))
        for x, y, w, h in (found if len(found) else [])
    ]
    boxes.sort(key=lambda b: (-b[2] * b[3], b[0], b[1]))
    return boxes


def expand_box(box: tuple[int, int, int, int], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A square box around `box` grown by `margin` of its size on each side, kept inside the image."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = min(side, width, height)
    cx, cy = x + w / 2, y + h / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, side, side


@dataclass(frozen=True)
class FoundFace:
    """A face in a photo: the detector's box (x, y, w, h) and, from the landmark detector, the
    eye line's tilt in degrees, six key points (KEYPOINTS of landmarks.py) and the score."""

    box: tuple[int, int, int, int]
    angle: float = 0.0
    keypoints: tuple[tuple[float, float], ...] | None = None
    score: float | None = None


def landmark_detector_problem() -> str | None:
    """Why the landmark detector cannot run here (a missing or changed model file, LiteRT not
    installed), or None when it can. Loads both detectors once per thread."""
    try:
        _landmark_detectors()
    except Exception as exc:  # noqa: BLE001 - LandmarksUnavailable, or a runtime that fails to load the file
        return str(exc)
    return None


def _landmark_detectors():
    detectors = getattr(_local, "detectors", None)
    if detectors is None:
        from core.ingest.landmarks import FaceDetector, FaceMesh

        detectors = (FaceDetector(model="short"), FaceDetector(model="full"), FaceMesh())
        _local.detectors = detectors
    return detectors


def find_faces(image: Image.Image, detector: str = DETECTOR_LANDMARKS, mesh_check: bool = True) -> list[FoundFace]:
    """The faces of `image`, largest first. DETECTOR_LANDMARKS: MediaPipe's short-range detector,
    with the full-range one's faces that it missed added (small faces in group photos), each
    face's tilt from the face mesh's eye corners; with `mesh_check`, a face in which the mesh finds
    no face (presence below MESH_MIN_PRESENCE) is dropped before it can hide a better candidate
    for the same face (bench/face_detection.py: on 70 real photos and turned or scaled copies it
    removed all 6 false faces, a cat's among them, and found 54 of 56 faces against 53 without);
    DETECTOR_HAAR: the cascade, boxes only. Raises LandmarksUnavailable when asked for the
    landmark detector where it cannot run."""
    if detector == DETECTOR_HAAR:
        return [FoundFace(box) for box in detect_faces(image)]
    rgb = np.asarray(image.convert("RGB"))
    scale = min(1.0, LANDMARK_DETECT_MAX_SIDE / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    from core.ingest.landmarks import MESH_MIN_PRESENCE

    short, full, mesh = _landmark_detectors()
    # Short range first: its key points are the best for the faces it sees. A candidate the mesh
    # rejects is dropped before it can hide the same face found better by another detector.
    found: list = []
    for candidate in [*short.detect(rgb), *full.detect(rgb), *_tiled(full, rgb)]:
        if any(_overlap(candidate.box, kept.box) > SAME_FACE_OVERLAP for kept, _read in found):
            continue
        read = mesh.landmarks(rgb, candidate)
        if mesh_check and read.presence < MESH_MIN_PRESENCE:
            continue  # the mesh sees no face where the detector did: a false face
        found.append((candidate, read))
    faces = []
    for d, read in found:
        x, y, w, h = (v / scale for v in d.box)
        box = (int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h))))
        points = tuple((float(px / scale), float(py / scale)) for px, py in d.keypoints)
        faces.append(FoundFace(box, round(read.eye_angle, 2), points, round(d.score, 4)))
    faces.sort(key=lambda f: (-f.box[2] * f.box[3], f.box[0], f.box[1]))
    return faces


def _tiled(detector, rgb: np.ndarray) -> list:
    """The full-range detector's faces in overlapping TILE_SIDE squares of a large photo, in the
    photo's pixels; none for a photo that fits one tile and a bit."""
    from core.ingest.landmarks import Detection

    height, width = rgb.shape[:2]
    if max(height, width) <= TILE_SIDE * 1.25:
        return []
    found = []
    for top in _tile_starts(height):
        for left in _tile_starts(width):
            shift = np.array([left, top], dtype=np.float32)
            for d in detector.detect(rgb[top : top + TILE_SIDE, left : left + TILE_SIDE]):
                x, y, w, h = d.box
                found.append(Detection((x + left, y + top, w, h), d.score, d.keypoints + shift))
    return found


def _tile_starts(length: int) -> list[int]:
    if length <= TILE_SIDE:
        return [0]
    step = TILE_SIDE - TILE_OVERLAP
    count = -(-(length - TILE_SIDE) // step) + 1
    return [round(i * (length - TILE_SIDE) / (count - 1)) for i in range(count)]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The share of the smaller box that lies inside the other."""
    inter = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    )
    smaller = min(a[2] * a[3], b[2] * b[3])
    return inter / smaller if smaller > 0 else 0.0


def aligned_crop(image: Image.Image, box: tuple[int, int, int, int], angle: float) -> Image.Image:
    """The square `box` of `image` turned about its centre by `angle` degrees (the eye line's
    tilt), so the eyes come out level; the corners that turn in from beyond the photo's edge
    repeat its edge pixels. angle 0 is a plain crop."""
    x, y, w, h = box
    if not angle:
        return image.crop((x, y, x + w, y + h))
    rgb = np.asarray(image.convert("RGB"))
    centre = (x + w / 2, y + h / 2)
    turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
    turn[:, 2] += np.array([w / 2, h / 2]) - np.array(centre)
    out = cv2.warpAffine(rgb, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(out)


def keypoints_in_crop(keypoints, box: tuple[int, int, int, int], angle: float) -> np.ndarray:
    """Key points given in photo pixels, in pixels of the face's aligned crop (aligned_crop)."""
    x, y, w, h = box
    points = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    cx, cy = x + w / 2, y + h / 2
    rad = math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    dx, dy = points[:, 0] - cx, points[:, 1] - cy
    # cv2's rotation by +angle (counter-clockwise on screen, y pointing down).
    return np.stack([cos * dx + sin * dy + w / 2, -sin * dx + cos * dy + h / 2], axis=1)
