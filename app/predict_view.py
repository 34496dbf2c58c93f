"""Predictions on photos outside the project: File ▸ Predict a folder… and the "Predictions" tab.

`PredictionJob` runs `main.py predict PROJECT FOLDER --run R --out TABLE.json --events json` as its
own process (through `WorkerProcess`, like the feature job: the studio never loads torch) and says
how far it is; when it finishes, the table it wrote is read back off the GUI thread
(`core.deploy.rows.read_table`). `PredictView` shows the progress (files n of N, the time left,
Cancel) while it runs, then the table: a `PredictionTableModel` behind a `PredictionSortProxy`
(numbers sort as numbers; rows whose file could not be read stay last, greyed), a line that
sums it up, and Save CSV… (`write_table`). A second prediction while one runs is refused with a
message: the first one's files are not thrown away unasked.

The view is a tab in the centre, beside All faces and Review queue, not a dock: the table has a
column per class and per level besides the thumbnail, the file and the prediction, and only
the centre is wide enough to show them without scrolling sideways; the right-hand docks stay
the face details, map and training, which describe the project's own faces.

Thumbnails are cut from the source files by each face's box and turned by its angle
(`core.ingest.imageio.load_rgb` + `crop_box`) in a thread pool, one task per file (all of its
faces from one decode), and kept in an LRU of QPixmaps like app/thumbnail_loader.py's.
"""

from __future__ import annotations

import html
import os
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTemporaryDir,
    QThreadPool,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app import settings as studio
from app.background import BackgroundJob
from app.face_model import class_colors
from app.project_state import ProjectState
from app.run_history import format_duration
from app.widgets import dot_icon, empty_hint
from app.worker_process import REPO_ROOT, WorkerOutcome, WorkerProcess
from core.deploy.rows import PredictedFace, PredictionTable, TableError, read_table, write_table
from core.store.models import RUN_FINISHED
from core.threads import thumbnail_threads
from core.training.events import Event

THUMB_SIZE = 48  # px: a thumbnail fits in this square, keeping its box's shape
THUMB_CACHE = 2000  # pixmaps kept; a 48x48 RGB32 is about 9 KB
ERROR_COLOR = "#7a808a"  # rows whose file could not be read, or held no face
PROBLEM_COLOR = "#ff6b6b"
# (least, most) px of a column sized to its contents: an error row's reason in the Predicted
# column, or a long file name, must not push the probabilities out of the window.
COLUMN_WIDTHS = {"file": (120, 280), "predicted": (90, 150), "level": (70, 120)}
SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # a number for numeric columns, text for the others
KEY_PREDICT_FOLDER = "folders/predict"  # where File ▸ Predict a folder… opens next
KEY_SAVE_FOLDER = "folders/predictions"  # where Save CSV… opens next

FaceKey = tuple[str, int]  # (source, row index in its table): unique per row


def predict_command(
    project_root: str | os.PathLike, inputs: Sequence[str | os.PathLike], run_id: int | None, out: str | os.PathLike
) -> tuple[str, list[str]]:
    """Program and arguments of the worker that predicts `inputs` with run `run_id`, writing `out`."""
    args = [str(REPO_ROOT / "main.py"), "predict", str(project_root), *(str(p) for p in inputs)]
    if run_id is not None:
        args += ["--run", str(run_id)]
    return sys.executable, [*args, "--out", str(out), "--events", "json"]


def run_to_predict_with(state: ProjectState) -> int | None:
    """The current run if it finished, else the newest finished run; None: nothing to predict with."""
    finished = [run.id for run in state.runs() if run.status == RUN_FINISHED]  # newest first
    if state.current_run in finished:
        return state.current_run
    return finished[0] if finished else None


def files_with_problems(table: PredictionTable) -> int:
    return len({face.source for face in table.faces if face.error})


# -- the job -------------------------------------------------------------------------------------
class PredictionJob(QObject):
    """One `main.py predict` worker at a time, its progress, and the table it wrote."""

    changed = Signal()  # running, progress or text changed
    finished = Signal(object)  # the PredictionTable read back
    failed = Signal(str)  # why, in the worker's words

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.worker = WorkerProcess(self)
        self.worker.event.connect(self._event)
        self.worker.ended.connect(self._ended)
        self.step, self.total, self.eta_s = 0, 0, None
        self.text = ""  # one line: what the job is doing or how it ended
        self.seconds: float | None = None  # the worker's own count, from its finished event
        self.run_id: int | None = None
        self.inputs: list[str] = []
        self._dir: QTemporaryDir | None = None
        self._out: Path | None = None
        self._reader: BackgroundJob | None = None

    @property
    def running(self) -> bool:
        """The worker runs, or its table is being read back."""
        return self.worker.running or self._reader is not None

    def start(self, project_root: str | os.PathLike, inputs: Sequence[str | os.PathLike], run_id: int | None) -> bool:
        if self.running:
            return False
        self._dir = QTemporaryDir()
        if not self._dir.isValid():
            self.text = f"cannot make a temporary folder for the table: {self._dir.errorString()}"
            self.failed.emit(self.text)
            return False
        self._out = Path(self._dir.path()) / "predictions.json"
        self.step, self.total, self.eta_s, self.seconds = 0, 0, None, None
        self.run_id, self.inputs = run_id, [str(p) for p in inputs]
        self.text = "Starting the model…"
        self.worker.start(*predict_command(project_root, inputs, run_id, self._out))
        self.changed.emit()
        return True

    def cancel(self) -> None:
        if self.worker.running:
            self.worker.cancel(kill_after_ms=5_000)
            self.text = "Stopping…"
            self.changed.emit()

    def shutdown(self, timeout_ms: int = 5_000) -> None:
        if self.worker.running:
            self.worker.cancel(kill_after_ms=timeout_ms)
            if not self.worker.wait(timeout_ms):
                self.worker._kill()
                self.worker.wait(2_000)
        if self._reader is not None:
            self._reader.wait()

    def _event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == Event.STARTED:
            self.run_id = event.get("run", self.run_id)
            self.total = int(event.get("files") or 0)
            self.text = f"Predicting {self.total:,} files with run {self.run_id}"
        elif kind == Event.PROGRESS:
            self.step, self.total = int(event.get("step") or 0), int(event.get("total") or self.total)
            self.eta_s = event.get("eta_s")
            self.text = f"Predicting with run {self.run_id}"
        elif kind == Event.INFO and event.get("message"):
            self.text = str(event["message"])
        elif kind == Event.FINISHED:
            self.seconds = float(event.get("seconds") or 0.0) or None
        else:
            return
        self.changed.emit()

    def progress_text(self) -> str:
        if not self.total:
            return ""
        left = f" · {format_duration(self.eta_s)} left" if self.eta_s is not None else ""
        return f"{self.step:,} / {self.total:,} files{left}"

    def _ended(self, outcome: WorkerOutcome) -> None:
        if outcome.status == Event.FINISHED and self._out is not None:
            out = self._out
            self.text = "Reading the table…"
            self._reader = BackgroundJob(lambda _report: read_table(out), self)
            self._reader.succeeded.connect(self._read)
            self._reader.failed.connect(lambda exc: self._fail(str(exc)))
            self._reader.done.connect(self._read_done)
            self._reader.start()
            self.changed.emit()
            return
        if outcome.status == Event.CANCELLED:
            self._fail("cancelled: no table was written")
        else:
            end = self.worker.end_event or {}
            self._fail(str(end.get("message") or outcome.error or "the worker stopped without saying why"))

    def _read(self, table: PredictionTable) -> None:
        self.text = "Done"
        self.finished.emit(table)

    def _read_done(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.deleteLater()
        self._dir = None  # the table is in memory; its temporary folder goes
        self.changed.emit()

    def _fail(self, reason: str) -> None:
        self.text = reason
        self._dir = None
        self.changed.emit()
        self.failed.emit(reason)


# -- thumbnails ----------------------------------------------------------------------------------
def face_image(source: str, box: tuple[int, int, int, int] | None, angle: float | None, size: int) -> QImage:
    """One face cut from its file by its box, turned by its angle, fitted into size x size."""
    from core.ingest.imageio import crop_box, load_rgb

    return _qimage(crop_box(load_rgb(source), box, angle), size)


def _qimage(image, size: int) -> QImage:
    image = image.convert("RGB")
    image.thumbnail((size, size))
    data = image.tobytes("raw", "RGB")
    return QImage(data, image.width, image.height, 3 * image.width, QImage.Format.Format_RGB888).copy()


class _Relay(QObject):
    """Lives in the GUI thread; the pool's tasks emit through it (a queued connection)."""

    done = Signal(int, object, object)  # generation, [(key, QImage)], {key: error}


class FaceThumbnails(QObject):
    """Thumbnails of predicted faces, cut from their source files off the GUI thread.

    `pixmap(key, face)` answers at once: the cached pixmap, or None after queueing its file
    (with every face of that file registered by `add`); `loaded(key)` / `failed(key, message)`
    follow in the GUI thread."""

    loaded = Signal(object)  # FaceKey
    failed = Signal(object, str)  # FaceKey, message

    def __init__(self, size: int = THUMB_SIZE, threads: int | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.size = size
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads or thumbnail_threads())
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._generation = 0
        self._cache: OrderedDict[FaceKey, QPixmap] = OrderedDict()
        self._errors: dict[FaceKey, str] = {}
        self._by_source: dict[str, list[tuple[FaceKey, PredictedFace]]] = {}
        self._queued: set[str] = set()

    def reset(self, faces: Sequence[tuple[FaceKey, PredictedFace]] = ()) -> None:
        """Forget every thumbnail; `faces` are the new table's (rows with an error get none)."""
        self._generation += 1
        self.pool.clear()
        self._cache.clear()
        self._errors.clear()
        self._queued.clear()
        self._by_source = {}
        for key, face in faces:
            if face.error is None:
                self._by_source.setdefault(face.source, []).append((key, face))

    def error(self, key: FaceKey) -> str | None:
        return self._errors.get(key)

    def pixmap(self, key: FaceKey, face: PredictedFace) -> QPixmap | None:
        pixmap = self._cache.get(key)
        if pixmap is not None:
            self._cache.move_to_end(key)
            return pixmap
        if key in self._errors or face.error is not None:
            return None
        source = face.source
        if source not in self._queued:
            self._queued.add(source)
            faces = self._by_source.get(source) or [(key, face)]
            generation, size, relay = self._generation, self.size, self._relay
            self.pool.start(lambda: _load_file(relay, generation, source, faces, size))
        return None

    @Slot(int, object, object)
    def _on_done(self, generation: int, images: list, errors: dict) -> None:
        if generation != self._generation:
            return
        for key, image in images:
            self._cache[key] = QPixmap.fromImage(image)
            self.loaded.emit(key)
        for key, message in errors.items():
            self._errors[key] = message
            self.failed.emit(key, message)
        while len(self._cache) > THUMB_CACHE:
            old, _pixmap = self._cache.popitem(last=False)
            source = old[0]
            self._queued.discard(source)  # a file whose faces left the cache is read again when asked

    def shutdown(self) -> None:
        self.reset()
        self.pool.waitForDone()


def _load_file(relay: _Relay, generation: int, source: str, faces: list, size: int) -> None:
    """In a pool thread: decode `source` once and cut each of its faces."""
    from core.ingest.imageio import ImageProblem, crop_box, load_rgb

    images: list[tuple[FaceKey, QImage]] = []
    errors: dict[FaceKey, str] = {}
    try:
        picture = load_rgb(source)
    except Exception as exc:  # noqa: BLE001 - a thumbnail must never take the studio down
        reason = str(exc) if isinstance(exc, ImageProblem) else f"{type(exc).__name__}: {exc}"
        errors = {key: reason for key, _face in faces}
    else:
        for key, face in faces:
            try:
                images.append((key, _qimage(crop_box(picture, face.box, face.angle), size)))
            except Exception as exc:  # noqa: BLE001
                errors[key] = str(exc)
    relay.done.emit(generation, images, errors)


# -- the table -----------------------------------------------------------------------------------
class PredictionTableModel(QAbstractTableModel):
    """A PredictionTable's rows: thumbnail, file, face, predicted, confidence, a column per class
    probability, each level's prediction, the error."""

    def __init__(self, thumbnails: FaceThumbnails, parent: QObject | None = None):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.table: PredictionTable | None = None
        self._headers: list[str] = []
        self._kinds: list[tuple[str, str]] = []  # (kind, its class or level) per column
        self._row_of: dict[FaceKey, int] = {}
        self._colors = class_colors()
        self._grey = QColor(ERROR_COLOR)
        self._icons = {name: dot_icon(color.name()) for name, color in self._colors.items()}
        thumbnails.loaded.connect(self._thumbnail_ready)
        thumbnails.failed.connect(self._thumbnail_ready)

    def set_table(self, table: PredictionTable | None) -> None:
        self.beginResetModel()
        self.table = table
        kinds: list[tuple[str, str]] = [(kind, "") for kind in ("thumb", "file", "face", "predicted", "confidence")]
        headers = ["", "File", "Face", "Predicted", "Confidence"]
        if table is not None:
            # Each level's pick before the probabilities: a 1280 px window shows them without scrolling.
            kinds += [("level", level) for level in table.levels] + [("class", c) for c in table.classes]
            headers += [level.capitalize() for level in table.levels] + list(table.classes)
        self._kinds, self._headers = [*kinds, ("error", "")], [*headers, "Problem"]
        faces = table.faces if table is not None else []
        self._row_of = {(face.source, row): row for row, face in enumerate(faces)}
        self.thumbnails.reset([((face.source, row), face) for row, face in enumerate(faces)])
        self.endResetModel()

    def face(self, row: int) -> PredictedFace:
        assert self.table is not None
        return self.table.faces[row]

    def column_kind(self, column: int) -> tuple[str, str]:
        return self._kinds[column]

    def column_of(self, kind: str, name: str = "") -> int:
        return self._kinds.index((kind, name))

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() or self.table is None else len(self.table.faces)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._kinds)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self._headers):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._headers[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            kind, name = self._kinds[section]
            return {
                "thumb": "the face, cut from its file by its box",
                "face": "the face's index in its file, largest first",
                "confidence": "the fused probability of the predicted class",
                "class": f"the fused probability of {name} (all levels together)",
                "level": f"the {name} level's own prediction",
                "error": "why a file gave no prediction",
            }.get(kind)
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.table is None:
            return None
        face = self.table.faces[index.row()]
        kind, name = self._kinds[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(face, kind, name)
        if role == SORT_ROLE:
            return self._sort_value(face, kind, name)
        if role == Qt.ItemDataRole.DecorationRole:
            if kind == "thumb":
                return self.thumbnails.pixmap((face.source, index.row()), face)
            if kind == "predicted" and face.predicted:
                return self._icons.get(face.predicted)
            return None
        if role == Qt.ItemDataRole.ForegroundRole:
            if face.error:
                return self._grey
            if kind == "predicted" and face.predicted in self._colors:
                return self._colors[face.predicted]
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(face, index.row(), kind)
        if role == Qt.ItemDataRole.TextAlignmentRole and kind in ("face", "confidence", "class"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.SizeHintRole and kind == "thumb":
            return QSize(THUMB_SIZE + 8, THUMB_SIZE + 6)
        return None

    @staticmethod
    def _text(face: PredictedFace, kind: str, name: str) -> str | None:
        if kind == "file":
            return Path(face.source).name
        if kind == "face":
            return "" if face.face is None else str(face.face)
        if kind == "predicted":
            return face.predicted or face.error or ""  # a file without a prediction says why here too
        if kind == "confidence":
            return "" if face.confidence is None else f"{face.confidence:.3f}"
        if kind == "class":
            value = face.fused.get(name) if face.fused else None
            return "" if value is None else f"{value:.3f}"
        if kind == "level":
            pick = face.level_prediction(name)
            return "" if pick is None else pick[0]
        if kind == "error":
            return face.error or ""
        return None

    @staticmethod
    def _sort_value(face: PredictedFace, kind: str, name: str) -> Any:
        if kind in ("thumb", "file"):
            return face.source.lower()
        if kind == "face":
            return -1 if face.face is None else face.face
        if kind == "confidence":
            return -1.0 if face.confidence is None else face.confidence
        if kind == "class":
            return face.fused.get(name, -1.0) if face.fused else -1.0
        return PredictionTableModel._text(face, kind, name) or ""

    def _tooltip(self, face: PredictedFace, row: int, kind: str) -> str | None:
        if kind == "file" or kind == "thumb":
            lines = [html.escape(face.source)]
            if face.box is not None:
                x, y, w, h = face.box
                turned = f", turned {face.angle:.1f}°" if face.angle else ""
                lines.append(f"face {face.face}: {w}x{h} at {x},{y}{turned}")
            problem = face.error or self.thumbnails.error((face.source, row))
            if problem:
                lines.append(f"<span style='color:{PROBLEM_COLOR}'>{html.escape(problem)}</span>")
            return "<br>".join(lines)
        if face.error:
            return html.escape(face.error)
        if kind == "level" and face.levels:
            return "<br>".join(
                f"{level}: {pick[0]} ({pick[1]:.3f})"
                for level in face.levels
                if (pick := face.level_prediction(level)) is not None
            )
        return None

    def _thumbnail_ready(self, key: FaceKey, *_message) -> None:
        row = self._row_of.get(key)
        if row is not None:
            index = self.index(row, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class PredictionSortProxy(QSortFilterProxyModel):
    """Sorts by SORT_ROLE (numbers as numbers); rows with an error stay last either way."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)

    def lessThan(self, left: QModelIndex | QPersistentModelIndex, right: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        assert isinstance(model, PredictionTableModel)
        left_bad, right_bad = bool(model.face(left.row()).error), bool(model.face(right.row()).error)
        if left_bad != right_bad:
            # Descending sorts reverse lessThan: the error row must then be the "smaller" one.
            return left_bad == (self.sortOrder() == Qt.SortOrder.DescendingOrder)
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if type(a) is not type(b):
            a, b = str(a), str(b)
        if a == b:
            return left.row() < right.row()  # stable: the table's own order
        return a < b


# -- the view ------------------------------------------------------------------------------------
class PredictView(QWidget):
    """The Predictions tab: the running prediction's progress, then its table and Save CSV…."""

    table_shown = Signal()  # a table is shown (a prediction finished, or show_table)
    problem = Signal(str)  # a prediction failed: why

    def __init__(self, state: ProjectState, dialogs, settings=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("predictView")
        self.state = state
        self.dialogs = dialogs
        self.settings = settings
        self.seconds: float | None = None
        self.job = PredictionJob(self)
        self.thumbnails = FaceThumbnails(parent=self)
        self.model = PredictionTableModel(self.thumbnails, self)
        self.proxy = PredictionSortProxy(self)
        self.proxy.setSourceModel(self.model)

        self.summary = QLabel()
        self.summary.setObjectName("predictSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.save_button = QPushButton("Save CSV…")
        self.save_button.setToolTip("write the table as a CSV file (a .json name keeps every level's probabilities)")
        self.save_button.clicked.connect(self.ask_save)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.save_button, 0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)

        self.progress_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMinimumWidth(260)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("stop the prediction (no table is written)")
        self.cancel_button.clicked.connect(self.job.cancel)
        self.progress_row = QWidget()
        row = QHBoxLayout(self.progress_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.progress_label, 1)
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)

        self.problem_label = QLabel()
        self.problem_label.setObjectName("predictProblem")
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextFormat(Qt.TextFormat.PlainText)
        self.problem_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem_label.setStyleSheet(f"color: {PROBLEM_COLOR};")

        self.table_view = QTableView()
        self.table_view.setObjectName("predictTable")
        self.table_view.setModel(self.proxy)
        self.table_view.setSortingEnabled(True)
        self.table_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table_view.setAlternatingRowColors(True)
        self.table_view.setWordWrap(False)
        self.table_view.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.table_view.verticalHeader().setVisible(False)
        self.table_view.verticalHeader().setDefaultSectionSize(THUMB_SIZE + 6)
        self.table_view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table_view.horizontalHeader().setStretchLastSection(True)
        self.table_view.horizontalHeader().setSortIndicatorShown(True)
        self.hint = empty_hint()
        self.hint.setText(
            "No predictions yet.\nFile ▸ Predict a folder… runs the current model on photos outside the project "
            "and lists every face it finds here."
        )
        self.pages = QStackedWidget()
        self.pages.addWidget(self.hint)
        self.pages.addWidget(self.table_view)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(top)
        layout.addWidget(self.progress_row)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.pages, 1)

        self.job.changed.connect(self._job_changed)
        self.job.finished.connect(self._job_finished)
        self.job.failed.connect(self._job_failed)
        state.project_changed.connect(self._project_changed)
        self.show_table(None)
        self._job_changed()

    @property
    def table(self) -> PredictionTable | None:
        return self.model.table

    @property
    def running(self) -> bool:
        return self.job.running

    # -- predicting --------------------------------------------------------------------------
    def start(self, inputs: Sequence[str | os.PathLike]) -> bool:
        """Predict `inputs` (files, folders, CSV manifests) with the current run; False: refused,
        with a message saying why."""
        if self.job.running:
            self.dialogs.error(
                "Prediction running",
                "A prediction is running already: wait for it to finish, or cancel it, before starting another.",
            )
            return False
        run_id = run_to_predict_with(self.state) if self.state.api is not None else None
        if self.state.root is None or run_id is None:
            self.dialogs.error("Predict", "Open a project with a finished run first: its model makes the predictions.")
            return False
        self.problem_label.clear()
        self.problem_label.setVisible(False)
        return self.job.start(self.state.root, inputs, run_id)

    def cancel(self) -> None:
        self.job.cancel()

    def shutdown(self) -> None:
        self.job.shutdown()
        self.thumbnails.shutdown()

    def _job_changed(self) -> None:
        job = self.job
        running = job.running
        self.progress_row.setVisible(running)
        self.cancel_button.setEnabled(job.worker.running and not job.worker.cancelling)
        self.progress_label.setText(job.text)
        self.progress.setRange(0, job.total if job.total else 0)  # busy until the first count
        self.progress.setValue(min(job.step, job.total))
        self.progress.setFormat(job.progress_text())
        self.save_button.setVisible(self.table is not None)
        self.save_button.setEnabled(self.table is not None and not running)
        if running and self.table is None:
            self.hint.setText(f"Predicting {', '.join(Path(p).name or p for p in job.inputs)}…")

    def _job_finished(self, table: PredictionTable) -> None:
        self.show_table(table, self.job.seconds)

    def _job_failed(self, reason: str) -> None:
        self.problem_label.setText(f"The prediction failed: {reason}")
        self.problem_label.setVisible(True)
        self.problem.emit(reason)
        if not reason.startswith("cancelled"):
            self.dialogs.error("Prediction failed", reason)
        self._job_changed()

    def _project_changed(self) -> None:
        if self.job.worker.running:
            self.job.cancel()  # its run belongs to the project left behind
        self.problem_label.setVisible(False)
        self.show_table(None)

    # -- the table ---------------------------------------------------------------------------
    def show_table(self, table: PredictionTable | None, seconds: float | None = None) -> None:
        self.seconds = seconds
        self.model.set_table(table)
        self.pages.setCurrentWidget(self.table_view if table is not None else self.hint)
        if table is None:
            self.summary.setText("")
            self.summary.setVisible(False)
            self.hint.setText(
                "No predictions yet.\nFile ▸ Predict a folder… runs the current model on photos outside the "
                "project and lists every face it finds here."
            )
        else:
            self.summary.setText(self.summary_text(table, seconds))
            self.summary.setVisible(True)
            self.proxy.sort(-1)  # the table's own order until a header is clicked
            self.table_view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
            self._size_columns()
            self.table_shown.emit()
        self._job_changed()

    def summary_text(self, table: PredictionTable, seconds: float | None) -> str:
        counts = table.summary()
        colors = class_colors()
        per_class = "  ".join(
            f"<span style='color:{colors[c].name() if c in colors else '#d8dde5'}'>{html.escape(c)}</span> {n:,}"
            for c, n in counts["per_class"].items()
            if n
        )
        problems = files_with_problems(table)
        parts = [
            f"<b>{counts['files']:,}</b> files",
            f"<b>{counts['faces']:,}</b> faces",
            f"<span style='color:{PROBLEM_COLOR}'><b>{problems:,}</b> with problems</span>"
            if problems
            else "no problems",
        ]
        tail = [f"run {table.run_id}" if table.run_id is not None else "", format_duration(seconds) if seconds else ""]
        if seconds and counts["faces"]:
            tail[-1] += f" ({counts['faces'] / seconds:.1f} faces/s)"
        first = "  ·  ".join(parts + [t for t in tail if t])
        return first + (f"<br>{per_class}" if per_class else "")

    def _size_columns(self) -> None:
        header = self.table_view.horizontalHeader()
        model = self.model
        for column in range(model.columnCount()):
            kind, _name = model.column_kind(column)
            if kind == "thumb":
                header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
                header.resizeSection(column, THUMB_SIZE + 10)
            elif kind == "error":
                header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            else:
                self.table_view.resizeColumnToContents(column)
                low, high = COLUMN_WIDTHS.get(kind, (0, 10_000))
                header.resizeSection(column, min(max(header.sectionSize(column), low), high))

    # -- saving ------------------------------------------------------------------------------
    def ask_save(self) -> Path | None:
        if self.table is None:
            return None
        start = studio.start_folder(self.settings, KEY_SAVE_FOLDER) if self.settings is not None else ""
        path = self.dialogs.choose_save_file(
            "Save the predictions", "CSV tables (*.csv);;JSON tables (*.json)", os.path.join(start, "predictions.csv")
        )
        if not path:
            return None
        if not Path(path).suffix:
            path += ".csv"
        saved = self.save(path)
        if saved is not None and self.settings is not None:
            studio.remember_folder(self.settings, KEY_SAVE_FOLDER, saved)
        return saved

    def save(self, path: str | os.PathLike) -> Path | None:
        """The table written to `path` (CSV or JSON by its suffix); a failure is said in a message."""
        if self.table is None:
            return None
        try:
            return write_table(self.table, path)
        except TableError as exc:
            self.dialogs.error("Cannot save the predictions", str(exc))
            return None
