"""The detail panel: one face large, with the run's evidence about it.

What it shows: the face; its current label and where that came from (imported with the data,
or which annotator set it and when); the annotators' votes on it, where two or more voted or an
adjudicator gave the final word, and whether they agree (`votes_text`); the run's suggestion
against its class threshold; why the face is in the review queue; each level's class
probabilities beside the fused ones (app/level_bars.py; levels the run did not produce are
absent, not zero); and the labeled train faces nearest to it in the run's embedding, the
instance level's evidence.

Reading one face is three small queries; the nearest labeled faces come from a per-run matrix of
the labeled faces' embeddings (core.active.evidence.LabeledNeighbours), built in a background
thread when the run changes and brought up to date with just the newly labeled faces after
corrections, so moving from face to face stays instant.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRect, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.background import NewestJobRunner
from app.face_model import placeholder_pixmap
from app.level_bars import LevelBars
from app.project_state import ProjectState
from app.thumbnail_loader import ThumbnailLoader
from app.widgets import empty_hint, local_time
from core.active import QueueItem
from core.active.evidence import FaceEvidence, LabeledNeighbours, Neighbour
from core.classes import class_names, expression_classes
from core.face_points import FacePoints
from core.store.models import SOURCE_IMPORTED
from core.store.queries import FaceRow
from core.team.votes import Vote

FACE_SIZE = 168
NEIGHBOURS = 6
NEIGHBOUR_THUMB = 64
NEIGHBOUR_MIN_CELL = 72  # wide enough for "happiness" in the cell's font
NEIGHBOUR_SPLIT = "train"  # the instance level's memory bank holds the labeled train faces
NO_PROJECT = "Open a project to see its faces here."
NO_FACE = (
    "Select a face in the grid to see it here with the model's evidence.\n\n"
    "In the review queue, the first face is selected for you: press 1–7 to label it, "
    "Enter to accept the suggestion, Space to skip, ? for every key."
)


def _section(title: str) -> QLabel:
    label = QLabel(title.upper())
    label.setObjectName("sectionTitle")
    return label


def _wrapping_label(object_name: str = "") -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wrap to the panel
    if object_name:
        label.setObjectName(object_name)
    return label


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dot(name: str) -> str:
    color = next((c.color for c in expression_classes() if c.name == name), "#5c6370")
    return f"<span style='color:{color}'>●</span>"


def votes_text(votes: tuple[Vote, ...] | list[Vote], disputed: bool) -> str:
    """The votes as the panel shows them, e.g. 'Votes ● fear — ana, ben · ● surprise — cy
    (disputed)', the adjudication apart; '' with fewer than two votes and no adjudication (the
    label's own line says who gave it)."""
    adjudications = [v for v in votes if v.adjudicated]
    if len(votes) < 2 and not adjudications:
        return ""
    by_label: dict[str | None, list[str]] = {}
    for vote in votes:
        if not vote.adjudicated:
            by_label.setdefault(vote.label, []).append(vote.annotator)
    order = sorted(by_label.items(), key=lambda kv: (-len(kv[1]), kv[0] or "~"))  # most votes first, no label last

    def shown(label: str | None, names: list[str]) -> str:
        # No-break spaces: a narrow panel wraps between the labels, never inside one.
        said = f"{_dot(label)}&nbsp;{label}" if label is not None else "no&nbsp;label"
        return f"{said}&nbsp;— {_escape(', '.join(names))}"

    grey = "<span style='color:#8b94a3'>{}</span>"
    lines = []
    if order:
        verdict = " " + grey.format("(agree)")
        if adjudications:
            verdict = ""  # the adjudication's line says how it was settled
        elif disputed:
            verdict = " <b style='color:#f2a93b'>(disputed)</b>"
        lines.append("Votes " + " · ".join(shown(label, names) for label, names in order) + verdict)
    if adjudications:
        final = max(adjudications, key=lambda v: v.created_at)
        lines.append("Adjudicated " + shown(final.label, [final.annotator]) + grey.format(" · the final word"))
    return "<br>".join(lines)


class NeighbourStrip(QWidget):
    """The nearest labeled faces as small thumbnails, each with its label and similarity."""

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None):
        super().__init__(parent)
        self.loader = loader
        self.neighbours: list[tuple[Neighbour, FaceRow | None]] = []
        self.colors = {c.name: QColor(c.color) for c in expression_classes()}
        self.font_small = QFont()
        self.font_small.setPixelSize(11)
        self.placeholder = placeholder_pixmap(NEIGHBOUR_THUMB)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)
        loader.loaded.connect(self._thumbnail_ready)

    def set_neighbours(self, neighbours: list[tuple[Neighbour, FaceRow | None]]) -> None:
        self.neighbours = neighbours
        self.update()

    def visible_count(self) -> int:
        return min(len(self.neighbours), max(1, self.width() // NEIGHBOUR_MIN_CELL))

    def sizeHint(self) -> QSize:
        return QSize(NEIGHBOURS * NEIGHBOUR_MIN_CELL, NEIGHBOUR_THUMB + 40)

    def minimumSizeHint(self) -> QSize:
        return QSize(NEIGHBOUR_MIN_CELL * 3, NEIGHBOUR_THUMB + 40)

    def _cell_width(self) -> int:
        return max(NEIGHBOUR_MIN_CELL, self.width() // max(1, self.width() // NEIGHBOUR_MIN_CELL))

    def _cell(self, i: int) -> QRect:
        width = self._cell_width()
        return QRect(i * width, 0, width, self.height())

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.setFont(self.font_small)
        metrics = QFontMetrics(self.font_small)
        for i in range(self.visible_count()):
            neighbour, face = self.neighbours[i]
            cell = self._cell(i)
            thumb = QRect(cell.x() + (cell.width() - NEIGHBOUR_THUMB) // 2, 2, NEIGHBOUR_THUMB, NEIGHBOUR_THUMB)
            pixmap = self.loader.pixmap(face) if face is not None else None
            painter.drawPixmap(thumb, pixmap if pixmap is not None else self.placeholder)
            line = QRect(cell.x() + 2, thumb.bottom() + 4, cell.width() - 4, 16)
            name = metrics.elidedText(neighbour.label, Qt.TextElideMode.ElideRight, line.width() - 12)
            text_width = metrics.horizontalAdvance(name) + 12
            left = line.x() + (line.width() - text_width) // 2
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self.colors.get(neighbour.label, QColor("#5c6370")))
            painter.drawEllipse(left, line.y() + 5, 7, 7)
            painter.setPen(QColor("#d8dde5"))
            painter.drawText(QRect(left + 11, line.y(), text_width, 16), Qt.AlignmentFlag.AlignVCenter, name)
            painter.setPen(QColor("#8b94a3"))
            painter.drawText(
                QRect(line.x(), line.bottom() + 1, line.width(), 15),
                Qt.AlignmentFlag.AlignHCenter,
                f"{neighbour.similarity:.2f}",
            )
        painter.end()

    def event(self, event) -> bool:
        if event.type() == event.Type.ToolTip:
            index = event.pos().x() // self._cell_width()
            if 0 <= index < self.visible_count():
                neighbour, _face = self.neighbours[index]
                self.setToolTip(
                    f"face {neighbour.face_id}: {neighbour.label}, cosine similarity {neighbour.similarity:.3f}"
                )
            else:
                self.setToolTip("")
        return super().event(event)

    def _thumbnail_ready(self, face_id: int) -> None:
        if any(n.face_id == face_id for n, _f in self.neighbours):
            self.update()


# The detector's key points: eyes, nose tip, mouth, ears (landmarks.KEYPOINTS order).
KEYPOINT_COLORS = ("#4cc9f0", "#4cc9f0", "#f2c14e", "#ef476f", "#90be6d", "#90be6d")
MESH_COLOR = QColor(255, 255, 255, 150)


def with_points(pixmap: QPixmap, points: FacePoints) -> QPixmap:
    """A copy of the face's pixmap (the face padded into a square, as thumbnails.ensure_thumbnail
    makes it) with the face mesh as small dots and the key points as larger ones."""
    side = pixmap.width()
    scale = min(side / max(points.width, 1), side / max(points.height, 1))
    dx, dy = (side - points.width * scale) / 2, (side - points.height * scale) / 2
    out = QPixmap(pixmap)
    painter = QPainter(out)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    if points.mesh is not None:
        painter.setBrush(MESH_COLOR)
        for x, y in points.mesh:
            painter.drawEllipse(QPointF(dx + x * scale, dy + y * scale), 0.9, 0.9)
    if points.keypoints is not None:
        for (x, y), color in zip(points.keypoints, KEYPOINT_COLORS):
            painter.setBrush(QColor(color))
            painter.drawEllipse(QPointF(dx + x * scale, dy + y * scale), 3.0, 3.0)
    painter.end()
    return out


class DetailPanel(QWidget):
    def __init__(self, state: ProjectState, loader: ThumbnailLoader, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("detailPanel")
        self.state = state
        self.face: FaceRow | None = None
        self.item: QueueItem | None = None
        self.queue_size: int | None = None
        self.queue_note: str | None = None
        self.evidence: FaceEvidence | None = None
        self.neighbours_index: LabeledNeighbours | None = None
        self._neighbour_faces: dict[int, FaceRow] = {}
        self._thresholds: dict[int, np.ndarray | None] = {}  # run id -> the run's class thresholds (or None)
        self.large_loader = ThumbnailLoader(size=FACE_SIZE, threads=2, parent=self)
        self.thumbs = loader
        self.index_runner = NewestJobRunner(self)

        self.image = QLabel()
        self.image.setFixedSize(FACE_SIZE, FACE_SIZE)
        self.image.setObjectName("detailFace")
        self.title = QLabel()
        self.title.setObjectName("detailTitle")
        self.label_text = _wrapping_label()
        self.votes_label = _wrapping_label("votesText")
        self.suggestion_text = _wrapping_label()
        self.queue_text = _wrapping_label("columnHeader")
        info = QVBoxLayout()
        info.setSpacing(4)
        info.addWidget(self.title)
        info.addWidget(self.label_text)
        info.addWidget(self.votes_label)
        info.addWidget(self.suggestion_text)
        info.addWidget(self.queue_text)
        info.addStretch(1)
        self.points_box = QCheckBox("Key points")
        self.points_box.setToolTip("draw the face detector's key points and the face mesh (where computed) on the face")
        self.points_box.toggled.connect(self._points_toggled)
        picture = QVBoxLayout()
        picture.setSpacing(2)
        picture.addWidget(self.image)
        picture.addWidget(self.points_box)
        top = QHBoxLayout()
        top.setSpacing(12)
        top.addLayout(picture)
        top.addLayout(info, 1)

        self.reason_title = _section("Why this face")
        self.reason_text = _wrapping_label()
        self.levels_title = _section("Evidence by level")
        self.bars = LevelBars()
        self.levels_note = _wrapping_label("columnHeader")
        self.neighbours_title = _section("Nearest labeled faces · instance level")
        self.strip = NeighbourStrip(loader)
        self.neighbours_note = _wrapping_label("columnHeader")

        body = QWidget()
        body.setObjectName("detailBody")
        layout = QVBoxLayout(body)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(6)
        layout.addLayout(top)
        for widget in (
            self.reason_title,
            self.reason_text,
            self.levels_title,
            self.bars,
            self.levels_note,
            self.neighbours_title,
            self.strip,
            self.neighbours_note,
        ):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.details = QScrollArea()  # not `scroll`: that is QWidget.scroll(dx, dy)
        self.details.setWidgetResizable(True)
        self.details.setFrameShape(QFrame.Shape.NoFrame)
        self.details.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.details.setWidget(body)

        self.empty = empty_hint()
        self.pages = QStackedWidget()
        self.pages.addWidget(self.details)
        self.pages.addWidget(self.empty)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.pages)

        self.large_loader.loaded.connect(self._large_ready)
        self.large_loader.failed.connect(self._large_ready)
        self.index_runner.succeeded.connect(self._index_built)
        self.index_runner.failed.connect(self._index_failed)
        state.project_changed.connect(self._project_changed)
        state.current_run_changed.connect(self._run_changed)
        state.labels_changed.connect(self._labels_changed)
        self._project_changed()

    # -- what is shown ------------------------------------------------------------------------
    @property
    def face_id(self) -> int | None:
        return self.face.id if self.face is not None else None

    def show_face(
        self,
        face: FaceRow | None,
        item: QueueItem | None = None,
        queue_size: int | None = None,
        queue_note: str | None = None,
    ) -> None:
        """Show `face` (None: the hint to select one) with its queue item, if it has one, else the
        queue's note on it (why it is in the queue unranked)."""
        self.face, self.item, self.queue_size, self.queue_note = face, item, queue_size, queue_note
        run_id, api = self.state.current_run, self.state.api
        if api is None:  # no project
            return self._show_message(NO_PROJECT)
        if face is None:
            return self._show_message(NO_FACE)
        thresholds = None
        if run_id is not None:
            if run_id not in self._thresholds:
                self._thresholds[run_id] = api.evidence.thresholds(run_id)
            thresholds = self._thresholds[run_id]
        view = api.evidence.face(run_id, face.id, thresholds, self._current_index(), NEIGHBOURS)
        self.evidence, neighbours = view.evidence, view.neighbours
        if self.evidence is None:  # the face left the project since the grid was filled
            return self._show_message(NO_FACE)
        self.pages.setCurrentWidget(self.details)
        self._show_image(face)
        self._show_facts(face, self.evidence, item)
        self._show_levels(self.evidence)
        self._show_neighbours(neighbours)

    def prefetch(self, faces: list[FaceRow]) -> None:
        """Start loading these faces' large images (the next ones in the queue)."""
        for face in faces:
            self.large_loader.pixmap(face)

    def _show_message(self, text: str) -> None:
        self.evidence = None
        self.empty.setText(text)
        self.pages.setCurrentWidget(self.empty)

    def _show_image(self, face: FaceRow) -> None:
        pixmap = self.large_loader.pixmap(face)
        if pixmap is None:
            pixmap = placeholder_pixmap(FACE_SIZE, broken=bool(self.large_loader.error(face.id)))
        tip = self.large_loader.error(face.id) or face.path
        api = self.state.api
        if api is not None and self.points_box.isChecked() and not self.large_loader.error(face.id):
            points = api.evidence.face_points(face.id)
            if points is not None:
                pixmap = with_points(pixmap, points)
                tip += "\n" + points.describe()
        self.image.setPixmap(pixmap)
        self.image.setToolTip(tip)

    def _points_toggled(self, _on: bool) -> None:
        if self.face is not None and self.evidence is not None:
            self._show_image(self.face)

    def _show_facts(self, face: FaceRow, evidence: FaceEvidence, item: QueueItem | None) -> None:
        self.title.setText(f"Face {face.id} <span style='color:#8b94a3'>· {evidence.split}</span>")
        if evidence.label is None:
            label = "<b>unlabeled</b>"
            origin = "press 1–7 to label it"
        else:
            label = f"{_dot(evidence.label)} <b>{evidence.label}</b>"
            if evidence.label_source == SOURCE_IMPORTED:
                origin = "imported with the data"
            else:
                origin = f"by {_escape(evidence.annotator or 'an annotator')} · {local_time(evidence.labeled_at)}"
        self.label_text.setText(f"Label {label}<br><span style='color:#8b94a3'>{origin}</span>")
        votes = votes_text(evidence.votes, evidence.disputed)
        self.votes_label.setText(votes)
        self.votes_label.setVisible(bool(votes))
        if evidence.fused is None:
            run = self.state.current_run
            self.suggestion_text.setText(
                "No suggestion: no finished run yet (train one: View ▸ Training)."
                if run is None
                else f"No suggestion: run {run} has no prediction for this face."
            )
        else:
            suggested = evidence.pseudo_label
            assert suggested is not None, "a face with a fused prediction has its pseudo-label"
            threshold = evidence.thresholds[class_names().index(suggested)] if evidence.thresholds is not None else None
            verdict = ("passes" if evidence.passed_threshold else "under") + " its threshold"
            if threshold is not None:
                verdict += f" {threshold:.2f}"
            positive = (evidence.extra or {}).get("positive_set")
            if positive and len(positive) > 1:  # LEAF keeps an ambiguous face's plausible classes
                verdict += "<br>plausible (LEAF): " + ", ".join(_escape(str(name)) for name in positive)
            self.suggestion_text.setText(
                f"Suggestion {_dot(suggested)} <b>{suggested}</b> "
                f"{evidence.confidence:.2f}<br><span style='color:#8b94a3'>{verdict}</span>"
            )
        if item is not None:
            total = self.queue_size
            self.queue_text.setText(f"Queue #{item.rank}" + (f" of {total:,}" if total else ""))
            self.reason_text.setText(_escape(item.reason))
        else:
            self.queue_text.setText("")
            note = _escape(self.queue_note) if self.queue_note else "Not in the current review queue."
            self.reason_text.setText(f"<span style='color:#8b94a3'>{note}</span>")

    def _show_levels(self, evidence: FaceEvidence) -> None:
        names = class_names()
        label_index = names.index(evidence.label) if evidence.label in names else None
        self.bars.set_evidence(evidence.levels, evidence.fused, evidence.thresholds, label_index)
        run = evidence.run_id
        self.levels_title.setText(("Evidence by level" + (f" · run {run}" if run is not None else "")).upper())
        notes = []
        absent = self.bars.absent_levels()
        if evidence.fused is None:
            notes.append("No prediction for this face in the current run.")
        elif absent:
            notes.append(
                f"Absent: {', '.join(absent)} (the run did not produce {'it' if len(absent) == 1 else 'them'})."
            )
        if evidence.fused is not None:
            notes.append(
                "Ticks on the fused bars: class thresholds."
                if evidence.thresholds is not None
                else "The run logged no class thresholds."
            )
        self.levels_note.setText(" ".join(notes))

    # -- nearest labeled faces ----------------------------------------------------------------
    def _current_index(self) -> LabeledNeighbours | None:
        """The current run's index of labeled faces; None while it is being built."""
        index = self.neighbours_index
        return index if index is not None and index.run_id == self.state.current_run else None

    def _show_neighbours(self, neighbours: list[Neighbour] | None) -> None:
        run = self.state.current_run
        if run is None:
            self.strip.set_neighbours([])
            self.neighbours_note.setText("No run yet: the nearest faces come from a run's embedding.")
            return
        if neighbours is None:
            self.strip.set_neighbours([])
            self.neighbours_note.setText(
                "Finding the nearest labeled faces…"
                if self.index_runner.busy
                else "The nearest labeled faces are not available for this run."
            )
            return
        missing = [n.face_id for n in neighbours if n.face_id not in self._neighbour_faces]
        if missing:
            self._neighbour_faces.update(self.state.faces_by_id(missing))
        self.strip.set_neighbours([(n, self._neighbour_faces.get(n.face_id)) for n in neighbours])
        index = self.neighbours_index
        assert index is not None, "neighbours are found only with the current run's index"
        if not neighbours:
            self.neighbours_note.setText(
                "No labeled train faces with an embedding in this run yet."
                if index.labeled_count == 0
                else f"Run {run} stored no embedding for this face."
            )
        else:
            self.neighbours_note.setText(
                f"Cosine similarity in run {run}'s embedding, among "
                f"{index.labeled_count:,} labeled {NEIGHBOUR_SPLIT} faces."
            )

    def _build_index(self) -> None:
        project, api, run_id = self.state.project, self.state.api, self.state.current_run
        self.neighbours_index = None
        if project is None or api is None or run_id is None:
            self.index_runner.cancel_pending()
            return
        self.index_runner.request(
            lambda _progress: api.evidence.neighbour_index(run_id, NEIGHBOUR_SPLIT), (project, run_id)
        )

    def _index_built(self, tag, index: LabeledNeighbours) -> None:
        project, run_id = tag
        if project is self.state.project and run_id == self.state.current_run:
            self.neighbours_index = index
            self._reshow()

    def _index_failed(self, tag, exc: BaseException) -> None:
        project, run_id = tag
        if project is self.state.project and run_id == self.state.current_run and self.face is not None:
            self.neighbours_note.setText(f"The nearest labeled faces could not be found: {exc}")

    # -- reacting -----------------------------------------------------------------------------
    def _reshow(self) -> None:
        if self.face is not None and self.state.project is not None:
            self.show_face(self.face, self.item, self.queue_size, self.queue_note)

    def _project_changed(self) -> None:
        self.large_loader.set_project(self.state.project)
        self._neighbour_faces.clear()
        self._thresholds.clear()
        self.face = self.item = self.queue_note = None
        self._build_index()
        self.show_face(None)

    def _run_changed(self, _run_id) -> None:
        self._thresholds.clear()  # a re-scored run logs nothing new, but its predictions changed
        self._build_index()
        self._reshow()

    def _labels_changed(self, face_ids: list[int]) -> None:
        if self.neighbours_index is not None:
            self.neighbours_index.labels_changed(face_ids)
        changed = set(face_ids)
        self._neighbour_faces = {k: v for k, v in self._neighbour_faces.items() if k not in changed}
        if self.face is not None and self.face.id in face_ids:
            # After the views moved on (auto-advance), so the face shown is the one refreshed.
            QTimer.singleShot(0, self._refresh_current)

    def _refresh_current(self) -> None:
        if self.face is not None and self.state.project is not None:
            fresh = self.state.faces_by_id([self.face.id]).get(self.face.id)
            self.show_face(fresh, self.item, self.queue_size, self.queue_note)

    def _large_ready(self, face_id: int, *_error) -> None:
        if self.face is not None and self.face.id == face_id:
            self._show_image(self.face)

    def shutdown(self) -> None:
        self.index_runner.wait()
        self.large_loader.shutdown()
