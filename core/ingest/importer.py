"""The importer: validate every file in parallel, find faces, then write them in batches.

Phase 1 (reading) decodes and checks each file in worker processes and never touches the
database. Phase 2 (writing) applies the label protocol and commits faces in batches, so a
process killed mid-import leaves every finished batch in place and a consistent database; a
re-run skips what is already there (duplicates by content).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import insert, select

from core.classes import ClassMapper, class_names
from core.ingest.budget import MemoryBudget
from core.ingest.faces import (
    DEFAULT_MARGIN,
    DETECTOR_HAAR,
    DETECTOR_LANDMARKS,
    FoundFace,
    expand_box,
    find_faces,
    landmark_detector_problem,
)
from core.ingest.imageio import ImageProblem, crop_box, decode_cost, decode_image, open_image_file
from core.ingest.sources import SourceItem, enumerate_source
from core.store.models import SOURCE_IMPORTED, HiddenTruth, Image, ImportBatch, Label, utcnow
from core.store.project import Project
from core.threads import apply_to_loaded_libraries, usable_cores

FACE_MODES = ("auto", "detect", "none")
# "auto": MediaPipe's detector, or the Haar cascade (with a note) where it cannot run.
DETECTOR_CHOICES = ("auto", DETECTOR_LANDMARKS, DETECTOR_HAAR)
# In "auto" mode, images whose longer side is at most this are taken as face crops already.
DEFAULT_CROP_MAX_SIDE = 256
# Saved face crops are no larger than this: plenty for any encoder, light on disk.
CROP_SAVE_MAX_SIDE = 512
WRITE_BATCH = 500
# Below this many files, starting worker processes costs more than it saves.
PARALLEL_MIN_FILES = 200
ALREADY_PRESENT = "duplicate (already in the project)"
# A face (the detected crop, or the whole image taken as a face) smaller than this on either side
# carries no expression an encoder could read; a 1x1 file is no face.
MIN_FACE_SIDE = 16
# Parallel decodes together reserve at most this much memory (core/ingest/budget.py), whatever the
# worker count: a 64-megapixel RGB JPEG or 16-bit PNG is estimated at 0.64 GB (imageio's
# PEAK_BYTES_PER_PIXEL), so three run at once, while 2 MP photos (20 MB each) never wait.
DECODE_MEMORY_BUDGET = 2 * 2**30


@dataclass
class ImportOptions:
    split: str = "train"
    faces: str = "auto"
    keep_labels_per_class: int | None = None
    seed: int = 0
    mapping: dict[str, str] = field(default_factory=dict)
    ignore_folder_names: bool = False
    crop_max_side: int = DEFAULT_CROP_MAX_SIDE
    margin: float = DEFAULT_MARGIN
    workers: int | None = None  # None: one per CPU core
    follow_links: bool = False  # follow symbolic links that lead out of a source folder
    detector: str = "auto"  # DETECTOR_CHOICES

    def validate(self) -> None:
        if self.faces not in FACE_MODES:
            raise ValueError(f"--faces must be one of {', '.join(FACE_MODES)}, not {self.faces!r}")
        if self.keep_labels_per_class is not None and self.keep_labels_per_class < 0:
            raise ValueError("--keep-labels-per-class must be 0 or more")
        if not 0 <= self.margin <= 2:
            raise ValueError(f"--margin must lie between 0 and 2, not {self.margin}")
        if self.crop_max_side < 16:
            raise ValueError(f"--crop-max-side must be at least 16, not {self.crop_max_side}")
        if self.workers is not None and self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if self.detector not in DETECTOR_CHOICES:
            raise ValueError(f"--detector must be one of {', '.join(DETECTOR_CHOICES)}, not {self.detector!r}")


@dataclass
class ImportProgress:
    phase: str  # "reading" or "writing"
    done: int
    total: int


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class ImportReport:
    source: str
    import_id: int | None = None
    files: int = 0
    imported: int = 0  # faces
    labeled: int = 0
    hidden: int = 0
    detected_faces: int = 0
    detector: str | None = None  # what found them: DETECTOR_LANDMARKS or DETECTOR_HAAR
    kept_per_class: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"Imported {self.imported} face(s) from {self.files} file(s) of {self.source} "
            f"in {self.seconds:.1f} s: {self.labeled} labeled, "
            f"{self.imported - self.labeled} unlabeled"
            + (f" ({self.hidden} with hidden ground truth)" if self.hidden else "")
            + "."
        ]
        if self.detected_faces:
            how = (
                "MediaPipe's face detector and cropped with the eyes level"
                if self.detector == DETECTOR_LANDMARKS
                else "OpenCV's Haar cascade and cropped"
            )
            lines.append(f"{self.detected_faces} face(s) were found by {how}.")
        if self.kept_per_class:
            kept = ", ".join(f"{k} {v}" for k, v in self.kept_per_class.items())
            lines.append(f"Labels kept per class: {kept}.")
        lines.extend(self.notes)
        if self.cancelled:
            lines.append("Cancelled: the faces written before cancelling are kept.")
        if self.skipped:
            reasons = Counter(s.reason.split(" (")[0] for s in self.skipped)
            lines.append(
                f"Skipped {len(self.skipped)} file(s): "
                + "; ".join(f"{r}: {n}" for r, n in reasons.most_common())
                + "."
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Task:
    index: int
    path: str
    faces: str
    crop_max_side: int
    margin: float
    faces_dir: str
    detector: str = DETECTOR_LANDMARKS


@dataclass
class _FaceFound:
    face_index: int
    box: tuple[int, int, int, int] | None
    crop_file: str | None
    angle: float | None = None
    keypoints: list[list[float]] | None = None
    detector: str | None = None
    score: float | None = None


@dataclass
class _FileResult:
    index: int
    content_hash: str = ""
    width: int = 0
    height: int = 0
    fmt: str = ""
    mode: str = ""
    faces: list[_FaceFound] = field(default_factory=list)
    problem: str | None = None


# The budget shared by this worker process's decodes (set by _init_worker); None when the
# files are read one at a time in the calling process, which needs no budget.
_decode_budget: MemoryBudget | None = None


def _init_worker(budget: MemoryBudget | None) -> None:
    global _decode_budget
    _decode_budget = budget
    # One thread per decoding process: the pool has one process per core already, and OpenCV's
    # face search would otherwise start a thread per core in each of them.
    apply_to_loaded_libraries(1)


def _process_file(task: _Task) -> _FileResult:
    """Hash, decode and validate one file; detect and crop faces where needed (worker side)."""
    result = _FileResult(task.index)
    try:
        with open_image_file(task.path) as source:
            # Reserve the decode's peak memory before the bytes are even read.
            cost = decode_cost(source.size, source.header())
            with _decode_budget.reserve(cost) if _decode_budget else nullcontext():
                _read_faces(task, source.read(), result)
    except ImageProblem as exc:
        result.problem = str(exc)
    except MemoryError:
        result.problem = "out of memory while decoding"
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop an import
        result.problem = f"unexpected error ({type(exc).__name__}: {exc})"
    return result


def _face_too_small(width: int, height: int) -> str | None:
    if min(width, height) >= MIN_FACE_SIDE:
        return None
    return f"face too small ({width}x{height} px; at least {MIN_FACE_SIDE} px a side)"


@dataclass(frozen=True)
class FaceCut:
    """Where one face of a photo is: its crop box (x, y, w, h) in the photo's pixels with the
    margin added, or None for the whole image taken as the face, and the eye line's turn."""

    index: int
    box: tuple[int, int, int, int] | None
    angle: float | None = None
    found: FoundFace | None = None


def cut_faces(
    image: PILImage.Image, faces: str, crop_max_side: int, margin: float, detector: str
) -> tuple[list[FaceCut], str | None]:
    """The faces of a decoded photo as import takes them (`faces`: auto, detect or none), largest
    first, or no faces and the reason. `predict` cuts new photos with it, so a photo is seen as
    its imported copy would be."""
    detect = faces == "detect" or (faces == "auto" and max(image.size) > crop_max_side)
    if not detect:
        problem = _face_too_small(*image.size)
        return ([], problem) if problem else ([FaceCut(0, None)], None)
    found = find_faces(image, detector)
    if not found:
        hint = "" if faces == "detect" else "; to take it whole as a face, use --faces none"
        return [], f"no face found ({image.width}x{image.height} image{hint})"
    crops = [(face, expand_box(face.box, margin, *image.size)) for face in found]
    usable = [(face, crop) for face, crop in crops if not _face_too_small(crop[2], crop[3])]
    if not usable:
        return [], _face_too_small(crops[0][1][2], crops[0][1][3])
    return [FaceCut(index, crop, face.angle, face) for index, (face, crop) in enumerate(usable)], None


def face_image(image: PILImage.Image, cut: FaceCut) -> PILImage.Image:
    """The face as the project stores it: cut, turned level, no larger than CROP_SAVE_MAX_SIDE."""
    if cut.box is None:
        return image
    crop = crop_box(image, cut.box, cut.angle)
    if max(crop.size) > CROP_SAVE_MAX_SIDE:
        crop.thumbnail((CROP_SAVE_MAX_SIDE, CROP_SAVE_MAX_SIDE))
    return crop


def _read_faces(task: _Task, data: bytes, result: _FileResult) -> None:
    result.content_hash = hashlib.sha256(data).hexdigest()
    image, result.fmt, result.mode = decode_image(data)
    result.width, result.height = image.size
    cuts, result.problem = cut_faces(image, task.faces, task.crop_max_side, task.margin, task.detector)
    for cut in cuts:
        if cut.box is None or cut.found is None:
            result.faces.append(_FaceFound(cut.index, None, None))
            continue
        crop_file = _save_crop(image, cut, task.faces_dir, result.content_hash)
        face = cut.found
        keypoints = [[round(x, 2), round(y, 2)] for x, y in face.keypoints] if face.keypoints else None
        result.faces.append(_FaceFound(cut.index, cut.box, crop_file, face.angle, keypoints, task.detector, face.score))


def _save_crop(image, cut: FaceCut, faces_dir: str, content_hash: str) -> str:
    relative = f"{content_hash[:2]}/{content_hash}_{cut.index}.png"
    target = Path(faces_dir) / relative
    if not target.exists():
        crop = face_image(image, cut)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        crop.save(tmp, format="PNG")
        os.replace(tmp, target)
    return relative


def _run_tasks(tasks: list[_Task], workers: int) -> Iterator[_FileResult]:
    if workers <= 1 or len(tasks) < PARALLEL_MIN_FILES:
        yield from map(_process_file, tasks)
        return
    # spawn, not fork: the GUI calls this from a thread, and forking a threaded Qt process is unsafe.
    context = multiprocessing.get_context("spawn")
    chunk = max(8, min(256, len(tasks) // (workers * 8)))
    budget = _make_decode_budget(context)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(budget,))
    try:
        yield from pool.map(_process_file, tasks, chunksize=chunk)
    finally:
        # On cancel the consumer stops early: drop the queued files instead of decoding them all.
        pool.shutdown(wait=True, cancel_futures=True)


def _make_decode_budget(context) -> MemoryBudget:
    return MemoryBudget(DECODE_MEMORY_BUDGET, context)


def _choose_detector(choice: str, report: ImportReport) -> str:
    """The detector this import uses: MediaPipe's where it can run; else, for "auto", the Haar
    cascade with a note saying why. Asked for by name and unable to run, it is an error."""
    if choice == DETECTOR_HAAR:
        return DETECTOR_HAAR
    problem = landmark_detector_problem()
    if problem is None:
        return DETECTOR_LANDMARKS
    if choice == DETECTOR_LANDMARKS:
        raise ValueError(f"MediaPipe's face detector cannot run: {problem}")
    report.notes.append(
        f"MediaPipe's face detector cannot run ({problem}); faces were found with "
        f"OpenCV's Haar cascade instead: more misses and false faces, no key points, "
        f"crops not turned to level the eyes."
    )
    return DETECTOR_HAAR


def choose_kept_labels(
    keys_by_class: dict[str, list[tuple[str, int]]], per_class: int, seed: int
) -> set[tuple[str, int]]:
    """The faces that keep their label under the protocol: `per_class` of each class, by seed.

    Keys are (stored path, face index), sorted first, so the choice depends only on the set of
    faces and the seed, not on file system order or the number of workers.
    """
    rng = np.random.default_rng(seed)
    kept: set[tuple[str, int]] = set()
    for label in class_names():  # fixed class order keeps the random stream stable
        keys = sorted(keys_by_class.get(label, []))
        if not keys:
            continue
        order = rng.permutation(len(keys))
        kept.update(keys[i] for i in order[:per_class])
    return kept


def import_source(
    project: Project,
    source: str | os.PathLike,
    options: ImportOptions | None = None,
    progress: Callable[[ImportProgress], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ImportReport:
    """Import SOURCE into `project`. Raises SourceError/ValueError only for an unusable source
    or bad options; problems with single files are reported in the returned report."""
    options = options or ImportOptions()
    options.validate()
    started = time.perf_counter()
    mapper = ClassMapper(options.mapping)
    items = enumerate_source(
        source,
        split=options.split,
        mapper=mapper,
        ignore_folder_names=options.ignore_folder_names,
        follow_links=options.follow_links,
    )
    if options.keep_labels_per_class is not None and not any(i.label for i in items if not i.problem):
        raise ValueError("--keep-labels-per-class needs a labeled source (class folders or a CSV with a label column)")
    report = ImportReport(source=str(source), files=len(items))
    # Entries refused while listing the source (links out of it, FIFOs, devices) are never opened.
    report.skipped.extend(Skipped(str(i.path), i.problem) for i in items if i.problem)
    detector = DETECTOR_LANDMARKS
    if options.faces != "none" and any(not i.problem for i in items):  # before anything is written
        detector = report.detector = _choose_detector(options.detector, report)
    with project.session() as session:
        batch = ImportBatch(
            source=str(Path(source).expanduser().resolve()), options={k: v for k, v in asdict(options).items()}
        )
        session.add(batch)
        session.flush()
        report.import_id = batch.id
        known_hashes = set(session.scalars(select(Image.content_hash)))

    is_cancelled = cancelled or (lambda: False)
    faces_dir = str(project.cache_dir("faces"))
    tasks = [
        _Task(i, str(item.path), options.faces, options.crop_max_side, options.margin, faces_dir, detector)
        for i, item in enumerate(items)
        if not item.problem
    ]
    workers = options.workers or usable_cores()  # x 1 thread each (_init_worker)

    # Phase 1: read and validate.
    accepted: list[tuple[SourceItem, _FileResult]] = []
    first_seen: dict[str, str] = {}
    for done, result in enumerate(_run_tasks(tasks, workers), start=1):
        item = items[result.index]
        shown = str(item.path)
        if result.problem:
            report.skipped.append(Skipped(shown, result.problem))
        elif result.content_hash in known_hashes:
            report.skipped.append(Skipped(shown, ALREADY_PRESENT))
        elif result.content_hash in first_seen:
            report.skipped.append(Skipped(shown, f"duplicate (same content as {first_seen[result.content_hash]})"))
        else:
            first_seen[result.content_hash] = shown
            accepted.append((item, result))
        if progress:
            progress(ImportProgress("reading", done, len(tasks)))
        if is_cancelled():
            report.cancelled = True
            break

    # The label protocol, then phase 2: write in batches.
    kept: set[tuple[str, int]] | None = None
    if options.keep_labels_per_class is not None and not report.cancelled:
        by_class: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for item, result in accepted:
            if item.label:
                for face in result.faces:
                    by_class[item.label].append((project.store_path(item.path), face.face_index))
        kept = choose_kept_labels(by_class, options.keep_labels_per_class, options.seed)
        for label in class_names():
            available = len(by_class.get(label, []))
            if available:
                report.kept_per_class[label] = min(available, options.keep_labels_per_class)
                if available < options.keep_labels_per_class:
                    report.notes.append(f"Class {label} has only {available} face(s); all keep their label.")

    rows = list(_face_rows(project, accepted, options.split))
    report.detected_faces = sum(1 for r in rows if r["image"]["face_w"] is not None)
    if not report.cancelled:
        for start in range(0, len(rows), WRITE_BATCH):
            labeled, hidden = _write_batch(project, rows[start : start + WRITE_BATCH], batch.id, kept)
            report.imported += len(rows[start : start + WRITE_BATCH])
            report.labeled += labeled
            report.hidden += hidden
            if progress:
                progress(ImportProgress("writing", min(start + WRITE_BATCH, len(rows)), len(rows)))
            if is_cancelled():
                report.cancelled = True
                break

    report.seconds = time.perf_counter() - started
    with project.session() as session:
        finished = session.get(ImportBatch, report.import_id)
        if finished is not None:  # None: the batch was deleted meanwhile, and the report is all there is
            finished.finished_at = utcnow()
            finished.imported = report.imported
            finished.skipped = len(report.skipped)
            finished.report = report.to_dict()
    return report


def _face_rows(project: Project, accepted: Iterable[tuple[SourceItem, _FileResult]], split: str):
    for item, result in accepted:
        stored = project.store_path(item.path)
        for face in result.faces:
            x, y, w, h = face.box if face.box else (None, None, None, None)
            found = (
                dict(
                    face_angle=face.angle,
                    face_keypoints=face.keypoints,
                    face_detector=face.detector,
                    face_score=face.score,
                )
                if face.box
                else {}
            )
            yield {
                "key": (stored, face.face_index),
                "label": item.label,
                "image": dict(
                    path=stored,
                    content_hash=result.content_hash,
                    face_index=face.face_index,
                    width=result.width,
                    height=result.height,
                    face_x=x,
                    face_y=y,
                    face_w=w,
                    face_h=h,
                    crop_path=f"faces/{face.crop_file}" if face.crop_file else None,
                    source_format=result.fmt,
                    source_mode=result.mode,
                    split=item.split,
                    **found,
                ),
            }


def _write_batch(
    project: Project, rows: list[dict], import_id: int, kept: set[tuple[str, int]] | None
) -> tuple[int, int]:
    """Insert one batch of faces with their labels in a single transaction."""
    now = utcnow()
    with project.session() as session:
        ids = session.scalars(
            insert(Image).returning(Image.id, sort_by_parameter_order=True),
            [{**r["image"], "import_id": import_id, "added_at": now} for r in rows],
        ).all()
        labels, hidden = [], []
        for image_id, row in zip(ids, rows):
            if row["label"] is None:
                continue
            if kept is None or row["key"] in kept:
                labels.append(
                    {"image_id": image_id, "label": row["label"], "source": SOURCE_IMPORTED, "updated_at": now}
                )
            else:
                hidden.append({"image_id": image_id, "label": row["label"]})
        if labels:
            session.execute(insert(Label), labels)
        if hidden:
            session.execute(insert(HiddenTruth), hidden)
    return len(labels), len(hidden)
