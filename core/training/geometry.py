"""Face geometry for head mode: MediaPipe's 468-point face mesh of every face and of its mirror
image, cached beside the image features, turned into a scale-free vector that joins them.

The mesh runs on the face as the studio stores it (a crop, levelled on import where a detector
found it): small crops are enlarged to MESH_INPUT_SIDE with a border of repeated edge pixels (the
detector needs some context around a face that fills its picture: measured on FER2013's 48-px
crops, 96.9% found with the border, about 90% without), the short-range detector finds the face
(else the crop's centre is taken as the face), and the mesh reads it. Its points are kept in
units of the face's side; a face the mesh cannot read (presence below MESH_MIN_PRESENCE, or an
unreadable image) is kept as "not found".

The vector (`geometry_vector`) is the mesh turned so the eye line is level, centred and scaled
by NORMALISATION, its contour points' x and y (LAYOUT), minus a reference face (the mean of the public-domain
astronaut photo's mesh and its mirror's, shipped as core/resources/models/face_mesh_reference.npy), times
GEOMETRY_GAIN; a face without a mesh is all zeros (the reference face) with its last element, "no mesh", at 1:
the head learns what such a face looks like.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from core.ingest.imageio import ImageProblem, load_face
from core.resources import RESOURCES_DIR
from core.training.data import FaceTable
from core.training.events import Event

if TYPE_CHECKING:  # imported at first use, in _mesh_models
    from core.ingest.landmarks import FaceDetector, FaceMesh

GEOMETRY_VERSION = 1  # bump when mesh_of_face changes, so old landmark caches are not reused
MESH_INPUT_SIDE = 192  # small crops are enlarged to this before the border is added
CROP_BORDER = 0.25  # the repeated-edge border around a crop, as a share of its side
SHARD = 2048
POINTS = 468
# How the mesh is made scale-free: "eyes": origin between the eyes, unit = the distance between
# them; "centroid": origin at the points' centre, unit = their root-mean-square distance from it.
# Both turn the eye line level. Chosen on a dev split of FER2013 train, val untouched
# (bench/geometry_probe.py, docs/benchmarks.md): centroid ahead of eyes in 5 of 5 seeds (linear
# probes, 44.8% against 44.3%); the gain (and LAYOUT below) likewise, with the studio's own head.
NORMALISATIONS = ("eyes", "centroid")
NORMALISATION = "centroid"
GEOMETRY_GAIN = 16.0


@dataclass(frozen=True)
class GeometryLayout:
    """Which mesh points the vector keeps, and how many coordinates of each (2: x, y; 3: with depth)."""

    name: str
    points: tuple[int, ...]
    coordinates: int

    @property
    def dim(self) -> int:
        return len(self.points) * self.coordinates + 1  # then "no mesh"


# The mesh's contours (MediaPipe's face-mesh topology): lips, eyes, eyebrows, face oval, nose.
LIPS = (
    0,
    13,
    14,
    17,
    37,
    39,
    40,
    61,
    78,
    80,
    81,
    82,
    84,
    87,
    88,
    91,
    95,
    146,
    178,
    181,
    185,
    191,
    267,
    269,
    270,
    291,
    308,
    310,
    311,
    312,
    314,
    317,
    318,
    321,
    324,
    375,
    402,
    405,
    409,
    415,
)
RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
RIGHT_EYEBROW = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
LEFT_EYEBROW = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
FACE_OVAL = (
    10,
    21,
    54,
    58,
    67,
    93,
    103,
    109,
    127,
    132,
    136,
    148,
    149,
    150,
    152,
    162,
    172,
    176,
    234,
    251,
    284,
    288,
    297,
    323,
    332,
    338,
    356,
    361,
    365,
    377,
    378,
    379,
    389,
    397,
    400,
    454,
)
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)
CONTOURS = GeometryLayout(
    "contours, x y",
    tuple(sorted(set(LIPS + RIGHT_EYE + LEFT_EYE + RIGHT_EYEBROW + LEFT_EYEBROW + FACE_OVAL + NOSE))),
    2,
)
FULL_MESH = GeometryLayout("all 468 points, x y z", tuple(range(POINTS)), 3)
# Chosen on the dev split with the studio's head (bench/geometry_probe.py): the 152 contour points'
# x and y do as well as all 468 points with depth (46.6% against 46.5%, 3 seeds) at a fifth of the
# inputs, which keeps refits fast; with fewer inputs the gain that matches is 16.
LAYOUT = CONTOURS
GEOMETRY_DIM = LAYOUT.dim
REFERENCE_FILE = RESOURCES_DIR / "models" / "face_mesh_reference.npy"


class GeometryUnavailable(RuntimeError):
    """The face mesh cannot run here, so a run with face geometry cannot start; says what to do."""


def _mesh_models() -> tuple[FaceDetector, FaceMesh]:
    from core.ingest.landmarks import FaceDetector, FaceMesh, LandmarksUnavailable

    try:
        return FaceDetector(model="short"), FaceMesh()
    except LandmarksUnavailable as exc:
        raise GeometryUnavailable(
            f"face geometry needs MediaPipe's face mesh, which cannot run here: {exc}; "
            f"or train without it (--no-geometry, or untick Geometry)"
        ) from None


def mesh_of_face(rgb: np.ndarray, detector, mesh) -> np.ndarray | None:
    """The face mesh of a face image (H x W x 3 uint8) as (468, 3) in units of the image's longer
    side, origin at its top left; None where the mesh finds no face."""
    from core.ingest.landmarks import MESH_MIN_PRESENCE, Detection

    side = max(rgb.shape[:2])
    scale = MESH_INPUT_SIDE / side if side < MESH_INPUT_SIDE else 1.0
    if scale != 1.0:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
    pad = round(CROP_BORDER * max(rgb.shape[:2]))
    framed = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    found = detector.detect(framed)
    if found:
        face = max(found, key=lambda d: d.score)
    else:  # the crop is the face: its box, eyes level at a third of its height
        h, w = rgb.shape[:2]
        eyes = np.array(
            [[pad + 0.35 * w, pad + h / 3], [pad + 0.65 * w, pad + h / 3]] + [[pad + w / 2, pad + h / 2]] * 4,
            dtype=np.float32,
        )
        face = Detection((float(pad), float(pad), float(w), float(h)), 0.0, eyes)
    result = mesh.landmarks(framed, face)
    if result.presence < MESH_MIN_PRESENCE:
        return None
    points = result.points.astype(np.float64)
    points[:, :2] -= pad
    return (points / (side * scale)).astype(np.float32)


def normalised(points: np.ndarray, how: str = NORMALISATION) -> np.ndarray:
    """(..., 468, 3) meshes turned so the eye line is level, centred and scaled (NORMALISATIONS)."""
    from core.ingest.landmarks import MESH_LEFT_EYE, MESH_RIGHT_EYE

    if how not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {how!r}; one of {', '.join(NORMALISATIONS)}")
    points = np.asarray(points, dtype=np.float64)
    right = points[..., list(MESH_RIGHT_EYE), :].mean(-2)
    left = points[..., list(MESH_LEFT_EYE), :].mean(-2)
    eye_line = left - right
    angle = np.arctan2(eye_line[..., 1], eye_line[..., 0])
    cos, sin = np.cos(angle)[..., None], np.sin(angle)[..., None]
    if how == "eyes":
        origin = (left + right) / 2
        unit = np.linalg.norm(eye_line[..., :2], axis=-1)
    else:
        origin = points.mean(-2)
        unit = np.sqrt(((points[..., :2] - origin[..., None, :2]) ** 2).sum(-1).mean(-1))
    centred = points - origin[..., None, :]
    x, y = centred[..., 0], centred[..., 1]
    level = np.stack([cos * x + sin * y, -sin * x + cos * y, centred[..., 2]], axis=-1)
    return level / np.maximum(unit, 1e-6)[..., None, None]


@lru_cache(maxsize=len(NORMALISATIONS))
def reference_face(how: str = NORMALISATION) -> np.ndarray:
    """The shipped reference mesh, normalised like the faces (468, 3); read once per process."""
    face = normalised(np.load(REFERENCE_FILE), how)
    face.flags.writeable = False
    return face


def geometry_vector(
    points: np.ndarray,
    found: np.ndarray,
    how: str = NORMALISATION,
    gain: float = GEOMETRY_GAIN,
    layout: GeometryLayout = LAYOUT,
) -> np.ndarray:
    """(N, layout.dim) float32 from meshes (N, 468, 3) and whether each was found (N,)."""
    out = np.zeros((len(points), layout.dim), dtype=np.float32)
    found = np.asarray(found, dtype=bool)
    if found.any():
        shapes = (normalised(points[found], how) - reference_face(how))[:, list(layout.points), : layout.coordinates]
        out[found, :-1] = (shapes.reshape(int(found.sum()), -1) * gain).astype(np.float32)
    out[~found, -1] = 1.0
    return out


@dataclass
class Meshes:
    """The cached meshes of some faces: points (N, 2, 468, 3) of the face and its mirror image,
    in units of the face's side, and whether each was found (N, 2)."""

    points: np.ndarray
    found: np.ndarray

    def view_vectors(
        self, views: int, how: str = NORMALISATION, gain: float = GEOMETRY_GAIN, layout: GeometryLayout = LAYOUT
    ) -> np.ndarray:
        """(N, views, layout.dim) for the feature cache's views: view 0 the face, view 1 its
        mirror, strong views alternately the face and the mirror (they flip at random)."""
        vectors = [geometry_vector(self.points[:, side], self.found[:, side], how, gain, layout) for side in (0, 1)]
        return np.stack([vectors[v % 2] for v in range(views)], axis=1)

    def without_mesh(self, unreadable: Sequence[int] = ()) -> int:
        """Faces whose mesh could not be read (in the face itself), leaving out the `unreadable`
        positions (an image that could not be read is counted as such, not here)."""
        readable = np.ones(len(self.found), dtype=bool)
        readable[list(unreadable)] = False
        return int((~self.found[readable, 0]).sum())


class LandmarkCache:
    """Meshes by face id in shards of SHARD ids under features/landmarks/g{GEOMETRY_VERSION}/,
    computed for the faces that lack them. One process fills a shard at a time (the feature
    cache's claims are not needed: a mesh costs milliseconds, and two writers would write the
    same values)."""

    def __init__(self, root: Path):
        self.folder = Path(root) / "landmarks" / f"g{GEOMETRY_VERSION}"
        self._models: tuple[FaceDetector, FaceMesh] | None = None

    def _path(self, shard: int) -> Path:
        return self.folder / f"shard_{shard:06d}.npz"

    def cached(self, face_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """One face's cached (points (2, 468, 3), found (2,)), or None where not computed yet; the
        last shard read is kept until its file changes, so stepping through faces reads it once."""
        shard = int(face_id) // SHARD
        try:
            key = (shard, self._path(shard).stat().st_mtime_ns)
        except OSError:
            return None
        if getattr(self, "_last_key", None) != key:
            self._last_entries, self._last_key = self._read(shard), key
        return self._last_entries.get(int(face_id))

    def _read(self, shard: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        path = self._path(shard)
        if not path.is_file():
            return {}
        try:
            with np.load(path) as data:
                return {int(i): (p, f) for i, p, f in zip(data["ids"], data["points"], data["found"])}
        except Exception:  # noqa: BLE001 - whatever is wrong with the shard
            return {}  # a damaged shard is recomputed

    def _write(self, shard: int, entries: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ids = np.array(sorted(entries), dtype=np.int64)
        tmp = self.folder / f".shard_{shard:06d}.{os.getpid()}.tmp.npz"
        np.savez(
            tmp, ids=ids, points=np.stack([entries[i][0] for i in ids]), found=np.stack([entries[i][1] for i in ids])
        )
        os.replace(tmp, self._path(shard))

    def load(
        self,
        faces: FaceTable,
        rows: np.ndarray | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Meshes:
        """The meshes of `rows` (default: every face), computing and caching what is missing."""
        rows = np.arange(len(faces)) if rows is None else rows
        points = np.zeros((len(rows), 2, POINTS, 3), dtype=np.float16)
        found = np.zeros((len(rows), 2), dtype=bool)
        by_shard = faces.by_shard(rows, SHARD)
        total = sum(len(p) for p in by_shard.values())
        done = 0
        for shard, positions in sorted(by_shard.items()):
            entries = self._read(shard)
            missing = [p for p in positions if int(faces.ids[rows[p]]) not in entries]
            for p in missing:
                if should_stop and should_stop():
                    self._write(shard, entries)  # keep what this shard has so far
                    raise InterruptedError("stopped while computing face meshes")
                entries[int(faces.ids[rows[p]])] = self._compute(faces, int(rows[p]))
                done += 1
                if progress and done % 64 == 0:
                    progress(done, total)
            if missing:
                self._write(shard, entries)
            done += len(positions) - len(missing)
            for p in positions:
                points[p], found[p] = entries[int(faces.ids[rows[p]])]
        if progress:
            progress(total, total)
        return Meshes(points, found)

    def cached_meshes(self, faces: FaceTable, rows: np.ndarray | None = None) -> tuple[Meshes, np.ndarray]:
        """The cached meshes of `rows` (default: every face) and whether each face's mesh was
        computed; nothing is computed (see FeatureCache.cached)."""
        rows = np.arange(len(faces)) if rows is None else rows
        points = np.zeros((len(rows), 2, POINTS, 3), dtype=np.float16)
        found = np.zeros((len(rows), 2), dtype=bool)
        cached = np.zeros(len(rows), dtype=bool)
        by_shard = faces.by_shard(rows, SHARD)
        for shard, positions in by_shard.items():
            entries = self._read(shard)
            for p in positions:
                entry = entries.get(int(faces.ids[rows[p]]))
                if entry is not None:
                    (points[p], found[p]), cached[p] = entry, True
        return Meshes(points, found), cached

    def _compute(self, faces: FaceTable, row: int) -> tuple[np.ndarray, np.ndarray]:
        if self._models is None:
            self._models = _mesh_models()
        points = np.zeros((2, POINTS, 3), dtype=np.float16)
        found = np.zeros(2, dtype=bool)
        try:
            face = np.asarray(load_face(faces.paths[row], faces.crop_paths[row], faces.boxes[row], faces.angles[row]))
        except ImageProblem:
            return points, found  # the feature cache reports the unreadable face
        for side, image in enumerate((face, np.ascontiguousarray(face[:, ::-1]))):
            mesh = mesh_of_face(image, *self._models)
            if mesh is not None:
                points[side], found[side] = mesh, True
        return points, found


def with_geometry(
    features: np.ndarray,
    meshes: Meshes,
    how: str = NORMALISATION,
    gain: float = GEOMETRY_GAIN,
    layout: GeometryLayout = LAYOUT,
) -> np.ndarray:
    """Image features (N, views, D) with each view's geometry vector appended (N, views, D + G)."""
    geometry = meshes.view_vectors(features.shape[1], how, gain, layout).astype(features.dtype)
    return np.concatenate([features, geometry], axis=2)


@dataclass
class HeadInputs:
    """What a head reads for some faces: image features, with the geometry appended where the
    run uses it; the rows whose image could not be read; faces without a mesh (None: no geometry)."""

    features: np.ndarray
    broken: list[int]
    without_mesh: int | None = None


def head_input_dim(image_dim: int, uses_geometry: bool) -> int:
    return image_dim + (GEOMETRY_DIM if uses_geometry else 0)


def load_head_inputs(
    project,
    encoder,
    faces: FaceTable,
    strong_views: int,
    uses_geometry: bool,
    rows: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    events=None,
) -> HeadInputs:
    """The cached image features of `rows` (default: every face), computing what is missing, and
    with `uses_geometry` their face meshes' geometry appended (features/landmarks/ beside them)."""
    from core.training.features import FeatureCache

    root = project.cache_dir("features")
    features, broken = FeatureCache(root, encoder, strong_views, seed=0).load(
        faces, rows, progress=progress, should_stop=should_stop
    )
    if not uses_geometry:
        return HeadInputs(features, broken)
    count = len(faces) if rows is None else len(rows)
    if events is not None:
        events.emit(
            Event.PHASE, phase="features", message=f"face meshes of {count:,} faces (cached after the first run)"
        )
    meshes = LandmarkCache(root).load(faces, rows, progress=progress, should_stop=should_stop)
    return HeadInputs(with_geometry(features, meshes), broken, meshes.without_mesh(broken))


def cached_head_inputs(
    project, encoder, faces: FaceTable, strong_views: int, uses_geometry: bool, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """View 0 of what a head reads for `rows` (default: every face), as the run's predictions
    read it: the cached image features, with the face geometry appended where the run uses it;
    and whether each face had all of it cached. Nothing is computed: no encoder pass, no mesh."""
    from core.training.features import FeatureCache

    root = project.cache_dir("features")
    features, cached = FeatureCache(root, encoder, strong_views, seed=0).cached(faces, rows)
    if not uses_geometry:
        return features, cached
    meshes, meshed = LandmarkCache(root).cached_meshes(faces, rows)
    geometry = geometry_vector(meshes.points[:, 0], meshes.found[:, 0]).astype(features.dtype)
    return np.concatenate([features, geometry], axis=1), cached & meshed


def input_width_problem(head_state: dict, expected: int) -> str | None:
    """Why a saved head cannot read today's inputs (its first layer's width differs: the run was
    trained with another encoder's features or another face-geometry layout), or None."""
    weight = head_state.get("input_norm.weight")
    if weight is None or int(weight.shape[0]) == expected:
        return None
    return (
        f"its head reads {int(weight.shape[0]):,} numbers per face and today's inputs are {expected:,} "
        f"(the face geometry's layout or the encoder's features changed since it was trained); "
        f"train a new run"
    )


def without_mesh_message(count: int) -> str:
    if count == 0:
        return "face geometry: every face has a face mesh"
    return (
        f"{count:,} face(s) have no face mesh (the landmarker could not read them): their geometry is "
        f"the head's learned default for such faces"
    )
