"""Face detection with OpenCV's bundled Haar cascade, and cropping with a margin."""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Detection runs on a copy no larger than this; boxes are scaled back to full resolution.
DETECT_MAX_SIDE = 1600
DEFAULT_MARGIN = 0.25

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
    boxes = [tuple(int(round(v / scale)) for v in box) for box in (found if len(found) else [])]
    boxes.sort(key=lambda b: (-b[2] * b[3], b[0], b[1]))
    return boxes  # type: ignore[return-value]


def expand_box(box: tuple[int, int, int, int], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A square box around `box` grown by `margin` of its size on each side, kept inside the image."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = min(side, width, height)
    cx, cy = x + w / 2, y + h / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, side, side
