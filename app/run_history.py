"""The project's training runs as a table (model/view over the runs and metrics tables).

Selecting a row makes that run the studio's current run (ProjectState.set_current_run), which
the map and the training panel's curves follow. A cancelled or failed run that kept its
checkpoint offers "Resume run N" in its context menu (the training panel runs it). Refreshed when
a project opens and when a run launched from the studio ends.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QMenu, QTableView, QWidget

from app.project_state import ProjectState
from app.widgets import local_time
from core.run_data import RunSummary
from core.store.models import RUN_CANCELLED, RUN_FAILED, RUN_FINISHED, RUN_RUNNING

# How a run ended and how good it is come first: the dock is rarely wide enough for every column
# (the rest scroll sideways), and a status must never be cut ("cance", "finish").
COLUMNS = ("Run", "Status", "Val acc", "Fused", "Algorithm", "Encoder", "Mode", "Started", "Duration")
STATUS_COLORS = {RUN_FINISHED: "#7bd88f", RUN_FAILED: "#ff6b6b", RUN_CANCELLED: "#f2c14e", RUN_RUNNING: "#6ea8fe"}


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _accuracy(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


class RunHistoryModel(QAbstractTableModel):
    def __init__(self, state: ProjectState, parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self._runs: list[RunSummary] = []
        state.project_changed.connect(self.reload)
        state.run_finished.connect(self.reload)

    def reload(self, *_args) -> None:
        self.beginResetModel()
        self._runs = self.state.runs()
        self.endResetModel()

    def run(self, row: int) -> RunSummary:
        return self._runs[row]

    def row_of(self, run_id: int | None) -> int | None:
        return next((i for i, run in enumerate(self._runs) if run.id == run_id), None)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._runs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        run = self._runs[index.row()]
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(run, column)
        if role == Qt.ItemDataRole.ForegroundRole and column == "Status":
            return QColor(STATUS_COLORS.get(run.status, "#d8dde5"))
        if role == Qt.ItemDataRole.ToolTipRole:
            return run.error or (
                f"run {run.id}: {run.algorithm} on {run.encoder} ({run.mode} mode"
                + (", soft labels from the annotators' votes" if run.soft_labels else "")
                + f"), {run.status}"
            )
        if role == Qt.ItemDataRole.TextAlignmentRole and column in ("Run", "Duration", "Val acc", "Fused"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _text(run: RunSummary, column: str) -> str:
        return {
            "Run": str(run.id),
            "Algorithm": run.algorithm + (" (soft labels)" if run.soft_labels else ""),
            "Encoder": run.encoder,
            "Mode": run.mode,
            "Status": run.status,
            "Started": local_time(run.started_at),
            "Duration": format_duration(run.duration_s()),
            "Val acc": _accuracy(run.val_accuracy),
            "Fused": _accuracy(run.val_fused_accuracy),
        }[column]


class RunHistoryView(QTableView):
    """The table; its selection and the studio's current run follow each other."""

    resume_requested = Signal(int)  # run id

    def __init__(self, state: ProjectState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runHistory")
        self.project_state = state  # not `state`: that is QAbstractItemView.state()
        self.history = RunHistoryModel(state, self)
        self.setModel(self.history)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        header = self.horizontalHeader()
        # Every column as wide as its widest text; a wide dock's spare room goes to the last one
        # (a stretched column in the middle was squeezed first and pushed Status out of sight).
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.selectionModel().selectionChanged.connect(self._selection_changed)
        self.history.modelReset.connect(self._select_current)
        state.current_run_changed.connect(self._select_current)

    def selected_run(self) -> int | None:
        rows = self.selectionModel().selectedRows()
        return self.history.run(rows[0].row()).id if rows else None

    def context_menu(self, row: int) -> QMenu | None:
        """What can be done with the run of `row`: resume it, when it is cancelled or failed and
        kept its checkpoint."""
        api = self.project_state.api
        run = self.history.run(row)
        if api is None or not api.runs.resumable(run.id):
            return None
        menu = QMenu(self)
        menu.addAction(f"Resume run {run.id} from its checkpoint").triggered.connect(
            lambda _=False, r=run.id: self.resume_requested.emit(r)
        )
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        menu = self.context_menu(index.row()) if index.isValid() else None
        if menu is not None:
            menu.exec(self.viewport().mapToGlobal(pos))

    def _selection_changed(self, *_args) -> None:
        run_id = self.selected_run()
        if run_id is not None:
            self.project_state.set_current_run(run_id)

    def _select_current(self, *_args) -> None:
        row = self.history.row_of(self.project_state.current_run)
        if row is None:
            self.clearSelection()
            return
        if self.selected_run() != self.project_state.current_run:
            self.selectionModel().select(
                self.history.index(row, 0),
                QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
            )
            self.scrollTo(self.history.index(row, 0))
