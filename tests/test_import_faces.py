"""Face-aware import (core/ingest/faces.py with the importer): MediaPipe's detector finds the
faces of real photos, each is cut square and turned so the eyes are level, the detector's
findings are stored with the face, and the Haar cascade takes over, saying so, where the
landmark detector cannot run."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from skimage import data
from sqlalchemy import func, select

from core.ingest import faces as faces_module
from core.ingest import landmarks
from core.ingest.faces import DETECTOR_HAAR, DETECTOR_LANDMARKS, aligned_crop, find_faces, keypoints_in_crop
from core.ingest.imageio import load_face, load_rgb
from core.ingest.importer import ImportOptions, import_source
from core.store.models import Image, ImportBatch
from tests.imagegen import save

TILT = 25.0


def tilted_astronaut() -> PILImage.Image:
    """The astronaut photo turned 25 degrees counter-clockwise (as shown) about her face."""
    photo = data.astronaut()
    matrix = cv2.getRotationMatrix2D((225, 115), TILT, 1.0)
    return PILImage.fromarray(cv2.warpAffine(photo, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT))


@pytest.fixture
def no_landmark_models(tmp_path, monkeypatch):
    """The landmark detector's model files gone (a broken install)."""
    monkeypatch.setattr(landmarks, "MODELS_DIR", tmp_path / "no-models")
    monkeypatch.delattr(faces_module._local, "detectors", raising=False)
    yield
    monkeypatch.delattr(faces_module._local, "detectors", raising=False)


def test_a_tilted_face_is_found_and_its_crop_turned_so_the_eyes_are_level(project, tmp_path):
    save(tilted_astronaut(), tmp_path / "photos" / "tilted astronaut é.jpg", quality=92)
    report = import_source(project, tmp_path / "photos", ImportOptions(faces="detect"))
    assert report.imported == 1 and report.detector == DETECTOR_LANDMARKS
    assert "eyes level" in report.summary()
    with project.session() as s:
        face = s.scalars(select(Image)).one()
    # Turned counter-clockwise on screen, her left eye (the image's right) rose: the tilt falls by 25.
    upright = find_faces(PILImage.fromarray(data.astronaut()))[0].angle
    assert face.face_detector == DETECTOR_LANDMARKS and face.face_score > 0.7
    assert face.face_angle == pytest.approx(upright - TILT, abs=2)
    assert len(face.face_keypoints) == 6
    crop = load_rgb(project.resolve_path(face.crop_path))
    assert crop.size == (face.face_w, face.face_h)
    again = find_faces(crop)
    assert len(again) == 1 and abs(again[0].angle) < 2, "the saved crop's eyes are level"
    # The stored key points, carried into the crop, put the eyes on one row.
    eyes = keypoints_in_crop(face.face_keypoints, face.face_box, face.face_angle)[:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.1 * abs(eyes[0, 0] - eyes[1, 0]) and eyes[0, 0] < eyes[1, 0]
    # Without its cached crop the face is cut and turned from the source the same way.
    rebuilt = load_face(project.resolve_path(face.path), None, face.face_box, face.face_angle)
    difference = np.abs(np.asarray(rebuilt, np.int16) - np.asarray(crop, np.int16)).mean()
    assert rebuilt.size == crop.size and difference < 2


def test_aligned_crop_without_a_tilt_is_the_plain_box():
    photo = PILImage.fromarray(data.astronaut())
    plain = aligned_crop(photo, (150, 40, 150, 150), 0.0)
    assert np.array_equal(np.asarray(plain), np.asarray(photo.crop((150, 40, 300, 190))))
    turned = aligned_crop(photo, (150, 40, 150, 150), 10.0)
    assert turned.size == (150, 150) and not np.array_equal(np.asarray(turned), np.asarray(plain))


def test_a_photo_with_two_faces_gives_two_faces_one_small(project, tmp_path):
    astronaut = PILImage.fromarray(data.astronaut())
    photo = PILImage.new("RGB", (1600, 900), (90, 90, 90))
    photo.paste(astronaut.resize((300, 300)), (100, 500))
    photo.paste(astronaut, (1000, 100))
    save(photo, tmp_path / "group" / "two.jpg", quality=92)
    report = import_source(project, tmp_path / "group", ImportOptions(faces="detect"))
    assert report.imported == 2 and report.detected_faces == 2
    with project.session() as s:
        faces = s.scalars(select(Image).order_by(Image.face_index)).all()
    assert [f.face_index for f in faces] == [0, 1]
    assert faces[0].face_w > faces[1].face_w, "largest first"
    assert faces[0].face_x > 1000 and faces[1].face_x < 400


def test_without_the_landmark_models_auto_falls_back_to_haar_and_says_why(project, tmp_path, no_landmark_models):
    save(PILImage.fromarray(data.astronaut()), tmp_path / "photos" / "astronaut.png")
    report = import_source(project, tmp_path / "photos", ImportOptions(faces="detect"))
    assert report.imported == 1 and report.detector == DETECTOR_HAAR
    note = " ".join(report.notes)
    assert "Haar" in note and "face_detection_short_range.tflite" in note and "missing" in note
    with project.session() as s:
        face = s.scalars(select(Image)).one()
    assert face.face_detector == DETECTOR_HAAR and face.face_keypoints is None and not face.face_angle


def test_asking_for_the_landmark_detector_where_it_cannot_run_is_an_error_before_any_write(
    project, tmp_path, no_landmark_models
):
    save(PILImage.fromarray(data.astronaut()), tmp_path / "photos" / "astronaut.png")
    with pytest.raises(ValueError, match=r"face_detection_short_range\.tflite"):
        import_source(project, tmp_path / "photos", ImportOptions(faces="detect", detector=DETECTOR_LANDMARKS))
    with project.session() as s:
        assert s.scalar(select(func.count()).select_from(ImportBatch)) == 0


def test_crops_are_taken_whole_and_never_sent_to_a_detector(project, tmp_path, no_landmark_models):
    crop = PILImage.fromarray(data.astronaut()[40:200, 150:310]).resize((96, 96))
    save(crop, tmp_path / "crops" / "face.png")
    report = import_source(project, tmp_path / "crops", ImportOptions(faces="none"))
    assert report.imported == 1 and report.detector is None and not report.notes


def test_face_points_give_the_key_points_and_once_computed_the_mesh_in_the_crops_pixels(project, tmp_path):
    from core.face_points import FacePointReader
    from core.training.data import load_face_table
    from core.training.geometry import LandmarkCache

    save(tilted_astronaut(), tmp_path / "photos" / "tilted.jpg", quality=92)
    import_source(project, tmp_path / "photos", ImportOptions(faces="detect"))
    with project.session() as s:
        face = s.scalars(select(Image)).one()
    reader = FacePointReader(project)
    points = reader.points(face.id)
    assert (points.width, points.height) == (face.face_w, face.face_h) and points.mesh is None
    right_eye, left_eye = points.keypoints[0], points.keypoints[1]
    assert abs(right_eye[1] - left_eye[1]) < 0.1 * (left_eye[0] - right_eye[0])
    assert points.describe() == "6 key points from the blazeface detector"
    with project.session() as s:
        LandmarkCache(project.cache_dir("features")).load(load_face_table(project, s))
    mesh = FacePointReader(project).points(face.id).mesh
    assert mesh.shape == (468, 2)
    # The mesh's eye corners lie around the detector's eye points, in the same pixels.
    assert np.linalg.norm(mesh[[33, 133]].mean(0) - right_eye) < 0.08 * face.face_w
    assert np.linalg.norm(mesh[[263, 362]].mean(0) - left_eye) < 0.08 * face.face_w
    assert reader.points(face.id + 1) is None
