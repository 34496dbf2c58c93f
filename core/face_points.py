"""The points the detail panel can draw on a face: the detector's six key points (stored with
the face on import) and the face mesh (from the landmark cache, where a run or the feature job
has computed it), both in pixels of the face image as the studio shows it (the crop, turned so
the eyes are level)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.ingest.faces import keypoints_in_crop
from core.store.models import Image
from core.store.project import Project
from core.training.geometry import LandmarkCache


@dataclass(frozen=True)
class FacePoints:
    width: int  # the face image's size, pixels
    height: int
    keypoints: np.ndarray | None  # (6, 2): the detector's (landmarks.KEYPOINTS order), or None
    mesh: np.ndarray | None  # (468, 2): the face mesh, or None where not computed or not found
    detector: str | None

    def describe(self) -> str:
        parts = []
        if self.keypoints is not None:
            parts.append(f"{len(self.keypoints)} key points from the {self.detector} detector")
        if self.mesh is not None:
            parts.append(f"{len(self.mesh)}-point face mesh")
        return ", ".join(parts) if parts else "no key points: this face has no detector points and no cached mesh"


class FacePointReader:
    """Reads FacePoints by face id, keeping the landmark cache's last shard between calls."""

    def __init__(self, project: Project):
        self.project = project
        self.meshes = LandmarkCache(project.cache_dir("features"))

    def points(self, face_id: int) -> FacePoints | None:
        with self.project.session() as session:
            face = session.get(Image, face_id)
            if face is None:
                return None
            box, angle = face.face_box, face.face_angle or 0.0
            width, height = (box[2], box[3]) if box else (face.width, face.height)
            keypoints = (
                keypoints_in_crop(face.face_keypoints, box, angle) if box is not None and face.face_keypoints else None
            )
            detector = face.face_detector
        mesh = None
        cached = self.meshes.cached(face_id)
        if cached is not None and bool(cached[1][0]):
            # Cached in units of the face image's longer side (geometry.mesh_of_face).
            mesh = cached[0][0, :, :2].astype(np.float64) * max(width, height)
        return FacePoints(width, height, keypoints, mesh, detector)
