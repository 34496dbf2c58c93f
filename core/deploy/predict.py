"""Predicting new photos with a trained model: files, folders (walked recursively) and CSV
manifests, their faces found and cut as import cuts them, one row per face.

Nothing is written to the project. A file that cannot be read, or holds no usable face, becomes a
row with the reason (never an exception); faces are predicted in batches of FACE_BATCH.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from core.classes import ClassMapper
from core.deploy.model import FACE_BATCH, FacePredictions, TrainedModel
from core.deploy.rows import PredictedFace, PredictionTable, probabilities
from core.ingest.faces import DEFAULT_MARGIN
from core.ingest.imageio import ImageProblem, decode_image, read_bytes
from core.ingest.importer import DEFAULT_CROP_MAX_SIDE, FACE_MODES, FaceCut, cut_faces, face_image
from core.ingest.sources import SourceError, SourceItem, enumerate_source

Progress = Callable[[int, int], None]  # (files done, files in all)


class PredictInputError(ValueError):
    """An INPUT that cannot be read at all (missing, a malformed manifest); names it and says why."""


@dataclass(frozen=True)
class FaceOptions:
    faces: str = "auto"  # FACE_MODES, as import's --faces
    detector: str = "auto"  # as import's --detector
    crop_max_side: int = DEFAULT_CROP_MAX_SIDE
    margin: float = DEFAULT_MARGIN

    def validate(self) -> None:
        if self.faces not in FACE_MODES:
            raise ValueError(f"--faces must be one of {', '.join(FACE_MODES)}, not {self.faces!r}")


def enumerate_inputs(inputs: Sequence[str | os.PathLike], labeled: bool = False) -> list[SourceItem]:
    """The files named by `inputs`: a file as itself, a folder walked recursively (with
    `labeled`, its class sub-folders give the labels, as import's), a CSV manifest's rows (with
    their labels). Raises PredictInputError for an input that cannot be read at all."""
    items: list[SourceItem] = []
    mapper = ClassMapper()
    for given in inputs:
        path = Path(given).expanduser()
        try:
            if path.is_dir() and not labeled:
                try:  # class folders keep their labels, like import's; any other tree is walked whole
                    found = enumerate_source(path, split="test", mapper=mapper)
                except SourceError:
                    found = enumerate_source(path, split="test", mapper=mapper, ignore_folder_names=True)
            else:
                found = enumerate_source(path, split="test", mapper=mapper)
        except SourceError as exc:
            raise PredictInputError(str(exc)) from None
        items.extend(found)
    return items


def predict_sources(
    model: TrainedModel,
    inputs: Sequence[str | os.PathLike],
    options: FaceOptions | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    items: list[SourceItem] | None = None,
) -> PredictionTable:
    """Every face of every input, predicted by `model` (rows in the inputs' order)."""
    options = options or FaceOptions()
    options.validate()
    items = enumerate_inputs(inputs) if items is None else items
    rows: list[PredictedFace] = []
    pending: list[tuple[PredictedFace, PILImage.Image]] = []
    detector = _detector(options)
    for done, item in enumerate(items, start=1):
        if should_stop and should_stop():
            raise InterruptedError(f"stopped after {done - 1} of {len(items)} files")
        for row, face in read_item(item, options, detector):
            rows.append(row)
            if face is not None:
                pending.append((row, face))
        if len(pending) >= FACE_BATCH:
            _predict_pending(model, pending)
        if progress:
            progress(done, len(items))
    _predict_pending(model, pending)
    return PredictionTable(model.run_id, list(model.classes), list(model.levels), rows)


FaceRows = list[tuple[PredictedFace, PILImage.Image | None]]


def read_item(item: SourceItem, options: FaceOptions, detector: str) -> FaceRows:
    """One file's rows with their face images, or one row with the reason and no image."""
    source = str(item.path)

    def failed(reason: str) -> FaceRows:
        return [(PredictedFace(source, label=item.label, error=reason), None)]

    if item.problem:
        return failed(item.problem)
    try:
        image, _fmt, _mode = decode_image(read_bytes(item.path))
        cuts, problem = cut_faces(image, options.faces, options.crop_max_side, options.margin, detector)
        if problem:
            return failed(problem)
        return [(_row(source, item.label, cut), face_image(image, cut)) for cut in cuts]
    except ImageProblem as exc:
        return failed(str(exc))
    except MemoryError:
        return failed("out of memory while decoding")
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a prediction
        return failed(f"unexpected error ({type(exc).__name__}: {exc})")


def _row(source: str, label: str | None, cut: FaceCut) -> PredictedFace:
    return PredictedFace(source, face=cut.index, box=cut.box, angle=cut.angle, label=label)


def _detector(options: FaceOptions) -> str:
    from core.ingest.faces import DETECTOR_HAAR, DETECTOR_LANDMARKS, landmark_detector_problem

    if options.detector != "auto":
        return options.detector
    if options.faces == "none":
        return DETECTOR_LANDMARKS  # never used: no face is searched for
    return DETECTOR_LANDMARKS if landmark_detector_problem() is None else DETECTOR_HAAR


def _predict_pending(model: TrainedModel, pending: list[tuple[PredictedFace, PILImage.Image]]) -> None:
    if not pending:
        return
    preds = model.predict_faces([face for _row, face in pending])
    fill_rows([row for row, _face in pending], preds, model)
    pending.clear()


def fill_rows(rows: Iterable[PredictedFace], preds: FacePredictions, model: TrainedModel) -> None:
    classes = model.classes
    for i, row in enumerate(rows):
        fused = preds.fused[i]
        best = int(np.argmax(fused))
        row.predicted = classes[best]
        row.confidence = round(float(fused[best]), 6)
        row.passed = bool(fused[best] >= model.thresholds[best])
        row.fused = probabilities(classes, fused)
        for level in model.levels:
            values = preds.level(level)
            if values is not None:
                row.levels[level] = probabilities(classes, values[i])
