"""The review queue: the current run's faces in the order a strategy ranks them (the least sure
first, by default), as a thumbnail grid with the strategy, filters and a limit above it.

Building a queue reads the whole run (about half a second for 30,000 faces), so it runs in a
background thread; a newer request overtakes an older one and the grid stays usable meanwhile.
The queue keeps its order while the annotator works through it (corrections update the faces
in place); it is rebuilt when the current run changes or a run finishes, when the strategy, a
filter or the limit changes, and on Refresh (F5); while the view is hidden, only once it is shown.
A live refit's run rebuilds it in place: the face being labeled stays current, first in the queue.
A selection on the embedding map narrows the queue as it narrows the All faces grid (the least sure
faces of the region the annotator picked), and a banner above the queue says so, with a Clear button.

For a team (a project whose overlap share is above 0, `main.py team --overlap`), the queue starts
on the faces the annotator is asked to vote on ("To vote on (mine)": the `to_vote` filter, for
the annotator in the status bar; another annotator rebuilds it). While the queue shown is the
`adjudication` strategy's, a banner says that the keys give the adjudicator's final word
(app/labeling_controller.py asks the model: `QueueListModel.adjudicating`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import combinations

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, QRect, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.background import NewestJobRunner
from app.empty_state import EmptyState
from app.face_grid import CELL_PADDING, FaceDelegate, FaceGrid
from app.face_model import FaceListModel, FaceRole
from app.project_state import ProjectState
from app.thumbnail_loader import ThumbnailLoader
from core.active import LABEL_FILTERS, STRATEGIES, QueueError, QueueFilters, QueueItem, queue_advice
from core.classes import class_names, expression_classes
from core.store.models import SPLITS
from core.store.queries import FaceRow
from core.studio_api import StudioApi

DEFAULT_STRATEGY = "margin"
DEFAULT_LIMIT = 50
MAX_LIMIT = 2000
# The confusions annotators meet most often come first in the pair filter.
COMMON_PAIRS = (("fear", "surprise"), ("sadness", "neutral"), ("disgust", "anger"))
LABEL_FILTER_TITLES = {
    "unlabeled": "Unlabeled",
    "labeled": "Labeled",
    "corrected": "Corrected",
    "to_vote": "To vote on (mine)",
    "all": "All faces",
}
TO_VOTE = "to_vote"  # the team's filter: the faces the annotator is asked to vote on
ADJUDICATION = "adjudication"  # the strategy whose labels are the adjudicator's final word
NO_PROJECT = "Open a project to review its faces."
NO_RUN = (
    "No finished training run yet, so there is nothing to review.\n\n"
    "Train a first model with the button below (the default settings), or choose your own in the "
    "Training panel (View ▸ Training, Ctrl+T): when the run finishes, the faces it is least sure "
    "about line up here, the least sure first.\n\n"
    "From a terminal: python main.py train PROJECT"
)


def pair_choices() -> list[tuple[str, str]]:
    names = class_names()
    common = [pair for pair in COMMON_PAIRS if all(name in names for name in pair)]
    rest = [pair for pair in combinations(names, 2) if pair not in common and tuple(reversed(pair)) not in common]
    return common + rest


@dataclass(frozen=True)
class QueueRequest:
    run_id: int
    strategy: str
    limit: int
    split: str | None
    filters: QueueFilters


@dataclass(frozen=True)
class QueueResult:
    request: QueueRequest
    items: list[QueueItem]
    faces: dict[int, FaceRow]
    seconds: float


def load_queue(api: StudioApi, request: QueueRequest) -> QueueResult:
    """The queue and its faces' rows (runs in a worker thread: no Qt here)."""
    started = time.perf_counter()
    items = api.evidence.queue(request.run_id, request.strategy, request.limit, request.split, request.filters)
    faces = api.faces.by_ids(item.face_id for item in items)
    return QueueResult(request, items, faces, time.perf_counter() - started)


class QueueListModel(FaceListModel):
    """The queue's faces in rank order; each row also knows its QueueItem (rank, reason)."""

    def __init__(self, state: ProjectState, loader: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(state, loader, parent)
        self._items: dict[int, QueueItem] = {}
        self._kept: int | None = None  # the face kept first by a live refit, ranked or not
        self._run: int | None = None
        self.strategy: str | None = None  # the strategy of the queue shown (None: none shown)
        # Faces of a to-vote queue that teammates settled after it was built: no longer this
        # annotator's to vote on, so moving to the next face passes them by.
        self.settled: set[int] = set()

    @property
    def adjudicating(self) -> bool:
        """The queue shown is the adjudication queue: labels given in it are final words."""
        return self.strategy == ADJUDICATION and bool(self._rows)

    def set_queue(
        self,
        items: list[QueueItem],
        faces: dict[int, FaceRow],
        first: FaceRow | None = None,
        strategy: str | None = None,
    ) -> None:
        """The queue in rank order, as `strategy` ranked it; `first` (the face being labeled when a
        live refit rebuilt the queue) goes before it, whether the new ranking has it or not."""
        self.beginResetModel()
        self.strategy = strategy
        self._rows = [faces[item.face_id] for item in items if item.face_id in faces]
        if first is not None:
            self._rows = [faces.get(first.id, first), *(face for face in self._rows if face.id != first.id)]
        self._items = {item.face_id: item for item in items}
        self._kept = first.id if first is not None else None
        self._run = items[0].run_id if items else None
        self._row_of = None
        self.settled = set()
        self.endResetModel()

    def item_for(self, face_id: int) -> QueueItem | None:
        return self._items.get(face_id)

    def note_for(self, face_id: int) -> str | None:
        """Why a face without a queue item is in the queue anyway: the face being labeled when a
        live refit rebuilt the queue stays first, even where the new ranking dropped it."""
        if face_id == self._kept and face_id not in self._items:
            run = f"run {self._run}'s" if self._run is not None else "the new"
            return f"Kept in place while you label it: {run} queue no longer ranks this face."
        return None

    def queue_size(self) -> int:
        return len(self._rows)

    def reload(self) -> None:
        """New faces (an import) do not reorder a queue: its faces are re-read in place."""
        self.refresh_faces([face.id for face in self._rows])

    def _project_changed(self) -> None:
        # The window's face model resets the shared thumbnail loader; only the rows go here.
        self.set_queue([], {})

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.ToolTipRole and index.isValid():
            item = self._items.get(self._rows[index.row()].id)
            if item is not None:
                return (
                    f"<b>#{item.rank}</b> · suggestion {item.pseudo_label} ({item.confidence:.2f})"
                    f"<br>{_escape(item.reason)}<br>" + super().data(index, role)
                )
        return super().data(index, role)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class QueueDelegate(FaceDelegate):
    """A face cell with its rank in the queue in the thumbnail's corner."""

    def __init__(self, thumb_size: int, parent: QWidget | None = None):
        super().__init__(thumb_size, parent)
        self.rank_font = QFont()
        self.rank_font.setPixelSize(10)
        self.rank_font.setBold(True)

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().paint(painter, option, index)
        face, model = index.data(FaceRole.ROW), index.model()
        item = model.item_for(face.id) if face is not None and isinstance(model, QueueListModel) else None
        if item is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setFont(self.rank_font)
        text = f"{item.rank}"
        width = painter.fontMetrics().horizontalAdvance(text) + 8
        left = option.rect.x() + (option.rect.width() - self.thumb_size) // 2
        box = QRect(left + 3, option.rect.y() + CELL_PADDING + 3, width, 15)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(20, 22, 26, 200))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor("#e6e9ee"))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()


def _combo(tooltip: str) -> QComboBox:
    combo = QComboBox()
    combo.setToolTip(tooltip)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(3)
    combo.setMinimumWidth(60)  # shrinks in a small window; grows to its text where there is room
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return combo


class SelectionBanner(QFrame):
    """Says that the map's selection narrows the queue, with a button that clears the selection."""

    clear_clicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("selectionBanner")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.clear_button = QToolButton()
        self.clear_button.setText("Clear selection")
        self.clear_button.setToolTip("clear the map's selection: the queue ranks every face again")
        self.clear_button.clicked.connect(self.clear_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.clear_button)
        self.hide()

    def show_selection(self, count: int | None) -> None:
        """`count` faces selected on the map (None: no selection, the banner hides)."""
        self.setVisible(count is not None)
        if count is not None:
            self.text.setText(
                f"Map selection: {count:,} face{'s' if count != 1 else ''} — the queue ranks only "
                "these (within the choices above)"
            )


class AdjudicationBanner(QFrame):
    """Says, while the adjudication queue is shown, that a label key gives the final word."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("adjudicationBanner")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.text, 1)
        self.hide()

    def show_for(self, annotator: str | None, adjudicating: bool) -> None:
        self.setVisible(adjudicating)
        if adjudicating:
            who = _escape(annotator or "you")
            self.text.setText(
                f"<b>Adjudicating</b> as {who}: 1–7 (or Enter, the suggestion) give the face its final "
                "label over the annotators' votes. Ctrl+Z takes an adjudication back."
            )


class ReviewQueueView(QWidget):
    """The queue's controls above its grid; says plainly why there is no queue when there is none."""

    queue_shown = Signal()  # a new queue is in the grid
    clear_selection_requested = Signal()  # the banner's Clear: the map's selection should go

    def __init__(self, state: ProjectState, loader: ThumbnailLoader, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("reviewQueue")
        self.state = state
        self.model = QueueListModel(state, loader, self)
        self.grid = FaceGrid(self.model)
        self.grid.setObjectName("reviewGrid")
        self.grid.delegate = QueueDelegate(loader.size, self.grid)
        self.grid.setItemDelegate(self.grid.delegate)
        self.runner = NewestJobRunner(self)
        self.last_result: QueueResult | None = None
        self.error: str | None = None  # why the last request gave no queue
        self.answered: QueueRequest | None = None  # the newest request that got its queue or its error
        self._focus_grid_after_build = False
        self._stale = False  # a rebuild is due when the view is next shown
        self._keep_place = False  # the next build keeps the current face (a live refit's run)
        self._asked: tuple | None = None  # the newest (project, request) handed to the runner
        self.map_selection: frozenset[int] | None = None  # faces selected on the embedding map
        self.annotator: str | None = None  # whose to_vote queue (the labeling controller's name)
        self.team_project = False  # the project's overlap share is above 0: start on to_vote
        self.banner = SelectionBanner()
        self.banner.clear_clicked.connect(self.clear_selection_requested)
        self.adjudication_banner = AdjudicationBanner()

        self.strategy_combo = _combo("how the faces are ranked")
        for name, strategy in STRATEGIES.items():
            self.strategy_combo.addItem(name.replace("_", " "), name)
            self.strategy_combo.setItemData(
                self.strategy_combo.count() - 1, strategy.description, Qt.ItemDataRole.ToolTipRole
            )
        self.strategy_combo.setCurrentIndex(max(0, self.strategy_combo.findData(DEFAULT_STRATEGY)))
        self.limit_spin = QSpinBox()
        self.limit_spin.setRange(1, MAX_LIMIT)
        self.limit_spin.setSingleStep(25)
        self.limit_spin.setValue(DEFAULT_LIMIT)
        self.limit_spin.setKeyboardTracking(False)  # typing 200 asks for one queue, not for 2, 20 and 200
        self.limit_spin.setToolTip("how many faces the queue holds")
        self.limit_spin.setMinimumWidth(56)
        self.refresh_button = QToolButton()
        self.refresh_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        self.refresh_button.setToolTip("rebuild the queue from the current labels (F5)")
        self.split_combo = _combo("which split's faces to review")
        for split in SPLITS:
            self.split_combo.addItem(split, split)
        self.split_combo.addItem("all splits", None)
        self.labels_combo = _combo("unlabeled faces, labeled ones, or those an annotator corrected")
        for key in LABEL_FILTERS:
            self.labels_combo.addItem(LABEL_FILTER_TITLES.get(key, key), key)
        self.pseudo_combo = _combo("only faces the run predicts as this class")
        self.pseudo_combo.addItem("any class", None)
        for cls in expression_classes():
            self.pseudo_combo.addItem(cls.name, cls.name)
        self.pair_combo = _combo("only faces whose two most probable classes are this pair")
        self.pair_combo.addItem("any pair", None)
        for pair in pair_choices():
            self.pair_combo.addItem(" / ".join(pair), "/".join(pair))  # a string: Qt keeps it as it is
        self.summary = QLabel()
        self.summary.setObjectName("columnHeader")
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        # Three short rows of two choices each: the view stays usable in a narrow window.
        controls = QGridLayout()
        controls.setHorizontalSpacing(4)
        controls.setVerticalSpacing(4)
        rows = (
            (("Strategy", self.strategy_combo), ("Limit", self.limit_spin)),
            (("Split", self.split_combo), ("Faces", self.labels_combo)),
            (("Predicted", self.pseudo_combo), ("Pair", self.pair_combo)),
        )
        for row, pairs in enumerate(rows):
            for column, (text, widget) in enumerate(pairs):
                controls.addWidget(QLabel(text), row, 2 * column)
                controls.addWidget(widget, row, 2 * column + 1)
        controls.addWidget(self.refresh_button, 0, 4)
        controls.setColumnStretch(1, 3)
        controls.setColumnStretch(3, 2)

        self.empty = EmptyState()  # main_window offers the first model's training on it
        self.pages = QStackedWidget()
        self.pages.addWidget(self.grid)
        self.pages.addWidget(self.empty)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.setSpacing(6)
        layout.addLayout(controls)
        layout.addWidget(self.adjudication_banner)
        layout.addWidget(self.banner)
        layout.addWidget(self.summary)
        layout.addWidget(self.pages, 1)

        # Before the rebuild: a strategy brings its own label filter (label_errors: labeled faces).
        self.strategy_combo.currentIndexChanged.connect(self._strategy_labels)
        for combo in (self.strategy_combo, self.split_combo, self.labels_combo, self.pseudo_combo, self.pair_combo):
            combo.currentIndexChanged.connect(self._controls_changed)
        self.strategy_combo.currentIndexChanged.connect(self._describe_strategy)
        self.limit_spin.valueChanged.connect(self._controls_changed)
        self.refresh_button.clicked.connect(self._controls_changed)
        self.runner.succeeded.connect(self._built)
        self.runner.failed.connect(self._build_failed)
        state.project_changed.connect(self._project_changed)
        state.current_run_changed.connect(self._run_changed)
        state.run_finished.connect(self._run_changed)
        state.labels_changed.connect(self._teammates_voted)
        self._describe_strategy()
        self._strategy_labels()
        self.refresh()

    # -- what is asked for --------------------------------------------------------------------
    def strategy(self) -> str:
        return self.strategy_combo.currentData()

    def set_strategy(self, name: str) -> None:
        self.strategy_combo.setCurrentIndex(self.strategy_combo.findData(name))

    def set_choice(self, combo: QComboBox, value) -> None:
        """Choose the entry whose data is `value` (None: the first, 'any' entry)."""
        combo.setCurrentIndex(max(0, combo.findData(value)))

    def request(self) -> QueueRequest | None:
        run_id = self.state.current_run
        if run_id is None:
            return None
        pair = self.pair_combo.currentData()
        labels = self.labels_combo.currentData()
        filters = QueueFilters(
            labels=labels,
            pseudo_label=self.pseudo_combo.currentData(),
            pair=tuple(pair.split("/")) if pair else None,
            face_ids=self.map_selection,
            annotator=self.annotator if labels == TO_VOTE else None,  # other queues are everyone's
        )
        return QueueRequest(run_id, self.strategy(), self.limit_spin.value(), self.split_combo.currentData(), filters)

    def set_map_selection(self, face_ids) -> None:
        """Rank only these faces (the map's selection); None ranks every face again."""
        ids = None if face_ids is None else frozenset(int(i) for i in face_ids)
        if ids != self.map_selection:
            self.map_selection = ids
            self.banner.show_selection(None if ids is None else len(ids))
            self._keep_place = False
            self.refresh()

    def _teammates_voted(self, face_ids: list[int]) -> None:
        """Teammates' votes arrived (the team poller): faces of this to-vote queue they settled
        are passed by (QueueListModel.settled) instead of being labeled twice."""
        api = self.state.api
        if not self.state.changed_by_team or api is None or not self.annotator:
            return
        if self.labels_combo.currentData() != TO_VOTE:
            return
        in_queue = [f for f in face_ids if self.model.row_of(f) is not None]
        if in_queue:
            self.model.settled |= set(in_queue) - api.team.still_to_vote(in_queue, self.annotator)

    def set_annotator(self, name: str) -> None:
        """Whose queue this is: a to_vote queue is rebuilt for the new name."""
        if name != self.annotator:
            self.annotator = name
            self._show_adjudicating()
            if self.labels_combo.currentData() == TO_VOTE:
                self._keep_place = False
                self.refresh()

    def _project_changed(self) -> None:
        # Face ids of another project mean nothing here (the map clears its selection too).
        self.map_selection = None
        self.banner.show_selection(None)
        was_to_vote = self.labels_combo.currentData() == TO_VOTE
        self.team_project = self._is_team_project()
        if self.team_project or was_to_vote:
            self._strategy_labels()  # a team starts on the faces the annotator is asked to vote on
        self.refresh()

    def _is_team_project(self) -> bool:
        api = self.state.api
        try:
            return api is not None and api.team.settings().overlap_share > 0
        except ValueError:  # a team setting out of range (TeamSettingsError): `main.py team` says which
            return False

    def _strategy_labels(self, *_args) -> None:
        """The Faces choice moves to the chosen strategy's own label filter, and the filters it
        cannot rank are greyed out (the strategy says which: core.active's Strategy.labels)."""
        strategy = STRATEGIES.get(self.strategy())
        if strategy is None:
            return
        items = self.labels_combo.model()
        for row in range(self.labels_combo.count()):
            item = items.item(row) if isinstance(items, QStandardItemModel) else None
            if item is not None:
                item.setEnabled(self.labels_combo.itemData(row) in strategy.label_filters)
        labels = strategy.labels
        if self.team_project and labels == "unlabeled" and TO_VOTE in strategy.label_filters:
            labels = TO_VOTE  # a team's unlabeled faces are theirs to vote on, with the overlap faces
        self.labels_combo.blockSignals(True)  # the strategy's change rebuilds the queue once
        self.set_choice(self.labels_combo, labels)
        self.labels_combo.blockSignals(False)

    def _describe_strategy(self, *_args) -> None:
        strategy = STRATEGIES.get(self.strategy())
        self.strategy_combo.setToolTip(f"{strategy.name}: {strategy.description}" if strategy else "")

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def _controls_changed(self, *_args) -> None:
        self._focus_grid_after_build = True  # keys go to the faces again, not to the control
        self._keep_place = False
        self.refresh()

    def _run_changed(self, *_args) -> None:
        # A live refit replacing the current run keeps the annotator on the face being labeled
        # (first in the rebuilt queue, still current); another run starts from the queue's top.
        self._keep_place = self.state.refreshing_in_place
        self.refresh()

    # -- building -----------------------------------------------------------------------------
    @property
    def building(self) -> bool:
        return self.runner.busy

    def refresh(self, *_args) -> None:
        """Rebuild the queue in the background (or show why there is none). While the view is
        hidden this waits until it is shown: opening a project then reads its run once, not twice."""
        project, request = self.state.project, self.request()
        self._stale = project is not None and request is not None and not self.isVisible()
        if self._stale:
            self.runner.cancel_pending()
            if self.answered != request:
                self.model.set_queue([], {})  # an outdated queue's ranks and reasons must not show
                self._show_adjudicating()
            return
        api = self.state.api  # None exactly when project is
        if project is None or api is None or request is None:
            self.runner.cancel_pending()
            self.last_result = None
            self.model.set_queue([], {})
            self._show_adjudicating()
            self._show_message(NO_PROJECT if project is None else NO_RUN)
            self.summary.setText("")
            return
        if self.state.refreshing_in_place and self.runner.busy and self._asked == (project, request):
            return  # a live refit's run is announced twice (current, then finished): one build
        self._asked = (project, request)
        self.summary.setText(f"Run {request.run_id} · building the {request.strategy.replace('_', ' ')} queue…")
        self.runner.request(lambda _progress: load_queue(api, request), (project, request))

    def _built(self, tag, result: QueueResult) -> None:
        project, request = tag
        if project is not self.state.project or request != self.request():
            return  # the project, run or controls changed meanwhile: a newer build is coming
        self.error = None
        self.last_result = result
        self.answered = request
        current = self.grid.current_face()
        keep, self._keep_place = self._keep_place, False
        self.model.set_queue(result.items, result.faces, first=current if keep else None, strategy=request.strategy)
        self._show_adjudicating()
        shown = self.model.queue_size()
        strategy = request.strategy.replace("_", " ")
        advice = queue_advice(request.strategy, result.items)
        self.summary.setText(
            f"Run {request.run_id} · {strategy} · {shown:,} face{'s' if shown != 1 else ''} "
            f"· built in {result.seconds:.2f} s" + (f" · ⚠ {advice.headline}" if advice else "")
        )
        self.summary.setToolTip(f"Note: {advice.detail}" if advice else "")
        narrowed = request.filters.pseudo_label or request.filters.pair
        if not shown and request.filters.face_ids is not None:
            self._show_message(
                "None of the faces selected on the map match these filters.\n\nTry another split or "
                "the “All faces” choice, or clear the map's selection (the banner above)."
            )
        elif not shown and not narrowed and request.strategy == ADJUDICATION:
            self._show_message(
                "No disputed faces: wherever two annotators voted, they agree, or an adjudicator has "
                "given the final word.\n\nThe queue fills as the team's votes come in (F5 rebuilds it)."
            )
        elif not shown and not narrowed and request.filters.labels == TO_VOTE:
            self._show_message(
                f"Nothing left for {self.annotator} to vote on here: no unlabeled face, and no overlap face "
                "still waiting for your vote.\n\nChoose another Faces filter to review labeled faces."
            )
        elif not shown:
            self._show_message(
                "No faces match these filters.\n\nTry another split, the “All faces” choice, "
                "or no pseudo-label or pair filter."
            )
        else:
            self.pages.setCurrentWidget(self.grid)
            row = self.model.row_of(current.id) if current is not None else None
            self.grid.select_row(row if row is not None else 0)
            if self._focus_grid_after_build and self.isVisible():
                self.grid.setFocus()
        self._focus_grid_after_build = False
        self.queue_shown.emit()

    def _build_failed(self, tag, exc: BaseException) -> None:
        project, request = tag
        if project is not self.state.project or request != self.request():
            return
        self.last_result = None
        self.answered = request
        self.model.set_queue([], {})
        self._show_adjudicating()
        if isinstance(exc, QueueError):
            self.error = str(exc)
            text = (
                f"No queue for run {request.run_id}: {exc}.\n\nSelect a finished run in the Training panel's "
                f"history, or choose another strategy."
            )
        else:
            self.error = f"{type(exc).__name__}: {exc}"
            text = f"Building the queue failed: {self.error}"
        self.summary.setText("")
        self._show_message(text)
        self._focus_grid_after_build = False
        self.queue_shown.emit()

    def _show_adjudicating(self) -> None:
        self.adjudication_banner.show_for(self.annotator, self.model.adjudicating)

    def _show_message(self, text: str) -> None:
        self.empty.setText(text)
        self.pages.setCurrentWidget(self.empty)

    def shutdown(self) -> None:
        self.runner.wait()
