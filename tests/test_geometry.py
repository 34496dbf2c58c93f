"""Face-mesh geometry for head mode (core/training/geometry.py): the mesh of a small face crop
and its mirror, a normalisation that forgets where the face was, how large and how turned, the
vector with its "no mesh" flag, and the landmark cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image as PILImage
from skimage import data

from core.ingest.faces import aligned_crop, expand_box, find_faces
from core.training import geometry
from core.training.data import FaceTable
from core.training.geometry import (
    GEOMETRY_DIM,
    NORMALISATIONS,
    POINTS,
    LandmarkCache,
    Meshes,
    geometry_vector,
    mesh_of_face,
    normalised,
    reference_face,
    with_geometry,
)
from tests.imagegen import save


@pytest.fixture(scope="module")
def models():
    return geometry._mesh_models()


@pytest.fixture(scope="module")
def small_face() -> np.ndarray:
    """The astronaut's face as FER2013 ships faces: a 48-px grey crop (as RGB)."""
    photo = PILImage.fromarray(data.astronaut())
    face = find_faces(photo)[0]
    crop = aligned_crop(photo, expand_box(face.box, 0.25, 512, 512), face.angle)
    return np.asarray(crop.convert("L").resize((48, 48), PILImage.LANCZOS).convert("RGB"))


def test_the_mesh_of_a_48_px_crop_and_of_its_mirror(small_face, models):
    points = mesh_of_face(small_face, *models)
    mirror = mesh_of_face(np.ascontiguousarray(small_face[:, ::-1]), *models)
    assert points is not None and mirror is not None and points.shape == (POINTS, 3)
    # In units of the crop's side: the face fills most of it; the mirror's nose tip sits mirrored.
    assert points[:, 0].min() > 0.1 and points[:, 0].max() < 0.95
    assert points[1, 0] == pytest.approx(1 - mirror[1, 0], abs=0.03)
    # Close to the shipped reference face (made from the same photo at full size).
    assert np.abs(normalised(points) - reference_face()).mean() < 0.05


def test_a_picture_without_a_face_has_no_mesh(models):
    noise = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    assert mesh_of_face(noise, *models) is None


@pytest.mark.parametrize("how", NORMALISATIONS)
def test_normalisation_forgets_position_size_and_turn(how):
    points = np.load(geometry.REFERENCE_FILE).astype(np.float64)
    turn = math.radians(17)
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    moved = points.copy()
    moved[:, :2] = points[:, :2] @ rotation.T * 3.5 + np.array([40.0, -7.0])
    moved[:, 2] = points[:, 2] * 3.5
    assert np.allclose(normalised(moved, how), normalised(points, how), atol=1e-6)
    level = normalised(points, how)
    eyes_y = level[[33, 133], 1].mean(), level[[263, 362], 1].mean()
    assert eyes_y[0] == pytest.approx(eyes_y[1], abs=1e-9)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalised(points, "procrustes")


def test_geometry_vector_marks_faces_without_a_mesh():
    reference = np.load(geometry.REFERENCE_FILE)[None].repeat(2, 0)
    vectors = geometry_vector(reference, np.array([True, False]))
    assert vectors.shape == (2, GEOMETRY_DIM) and vectors.dtype == np.float32
    assert np.abs(vectors[0, :-1]).max() < 1e-5 and vectors[0, -1] == 0  # the reference face: all zeros
    assert not vectors[1, :-1].any() and vectors[1, -1] == 1


def test_views_take_the_face_and_its_mirror_in_turn():
    points = np.zeros((3, 2, POINTS, 3), np.float32)
    points[:] = np.load(geometry.REFERENCE_FILE)
    points[:, 1, :, 0] += 0.1  # the mirror's mesh a little to the right
    found = np.array([[True, True], [True, False], [False, False]])
    meshes = Meshes(points, found)
    vectors = meshes.view_vectors(4)
    assert vectors.shape == (3, 4, GEOMETRY_DIM) and meshes.without_mesh() == 1 and meshes.without_mesh([2]) == 0
    assert np.array_equal(vectors[:, 0], vectors[:, 2]) and np.array_equal(vectors[:, 1], vectors[:, 3])
    assert vectors[1, 1, -1] == 1 and vectors[1, 0, -1] == 0 and vectors[2, :, -1].all()
    features = np.ones((3, 4, 5), np.float16)
    joined = with_geometry(features, meshes)
    assert joined.shape == (3, 4, 5 + GEOMETRY_DIM) and joined.dtype == np.float16
    assert (joined[..., :5] == 1).all()


def test_the_landmark_cache_computes_once_and_keeps_unreadable_faces_as_not_found(tmp_path, small_face, monkeypatch):
    good = save(PILImage.fromarray(small_face), tmp_path / "faces" / "astronaut.png")
    broken = tmp_path / "faces" / "broken.png"
    broken.write_bytes(b"not an image")
    faces = FaceTable(
        ids=np.array([3, 5000], dtype=np.int64),
        splits=np.array(["train", "val"], dtype=object),
        labels=np.array([-1, -1]),
        paths=[good, broken],
        crop_paths=[None, None],
        boxes=[None, None],
        angles=[None, None],
    )
    cache = LandmarkCache(tmp_path / "features")
    meshes = cache.load(faces)
    assert meshes.found.tolist() == [[True, True], [False, False]]
    assert len(list(cache.folder.glob("shard_*.npz"))) == 2  # ids 3 and 5000 lie in different shards

    def no_compute(*_args):
        raise AssertionError("computed again")

    monkeypatch.setattr(LandmarkCache, "_compute", no_compute)
    again = LandmarkCache(tmp_path / "features").load(faces, np.array([1, 0]))
    assert again.found.tolist() == [[False, False], [True, True]]
    assert np.array_equal(again.points[1], meshes.points[0])


def test_without_the_mesh_model_a_geometry_run_cannot_start_and_says_what_to_do(tmp_path, small_face, monkeypatch):
    from core.ingest import landmarks

    monkeypatch.setattr(landmarks, "MODELS_DIR", tmp_path / "no-models")
    path = save(PILImage.fromarray(small_face), tmp_path / "face.png")
    faces = FaceTable(
        ids=np.array([1], dtype=np.int64),
        splits=np.array(["train"], dtype=object),
        labels=np.array([-1]),
        paths=[path],
        crop_paths=[None],
        boxes=[None],
        angles=[None],
    )
    with pytest.raises(geometry.GeometryUnavailable, match=r"face_landmark\.tflite|face_detection_short_range") as info:
        LandmarkCache(tmp_path / "features").load(faces)
    assert "--no-geometry" in str(info.value)


def test_the_contour_layout_keeps_152_points_x_and_y():
    from core.training.geometry import CONTOURS, FULL_MESH, GEOMETRY_DIM, LAYOUT

    assert LAYOUT is CONTOURS and len(set(CONTOURS.points)) == len(CONTOURS.points) == 152
    assert all(0 <= i < POINTS for i in CONTOURS.points) and {33, 133, 263, 362} <= set(CONTOURS.points)
    assert GEOMETRY_DIM == CONTOURS.dim == 152 * 2 + 1 and FULL_MESH.dim == POINTS * 3 + 1
    reference = np.load(geometry.REFERENCE_FILE)[None]
    full = geometry_vector(reference + 0.01, np.array([True]), layout=FULL_MESH)
    assert full.shape == (1, FULL_MESH.dim)


def test_a_head_saved_for_other_inputs_is_refused_by_name():
    import torch

    from core.training.geometry import input_width_problem

    assert input_width_problem({"input_norm.weight": torch.ones(1313)}, 1313) is None
    problem = input_width_problem({"input_norm.weight": torch.ones(2413)}, 1313)
    assert "2,413" in problem and "1,313" in problem and "train a new run" in problem
