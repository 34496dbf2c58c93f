"""The embedding map: every face of the current run at its 2-D position (UMAP, else PCA).

One ScatterPlotItem holds all points (arrays in, brushes from a small palette, pxMode), so
30,000 faces pan smoothly. Colour by current label, pseudo-label, confidence, level
disagreement or vote entropy (how far the annotators' votes on a face split; counted off the GUI
thread, again after corrections pause); hover shows the face; a rectangle or lasso selects faces and
`selection_changed(frozenset of ids, or None when cleared)` lets the grid filter to them;
`highlight(ids)` rings faces selected elsewhere (the grid).
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import settings as studio
from app.background import NewestJobRunner
from app.empty_state import EmptyState
from app.map_colors import COLOR_MODES, POINT_SIZE, SELECTION, PointColors, color_points
from app.map_view import SelectionViewBox
from app.project_state import ProjectState
from app.thumbnail_loader import ThumbnailLoader
from core.classes import class_names
from core.geometry import points_in_polygon, points_in_rect
from core.run_data import RunMap
from core.store.project import Project

HOVER_RADIUS_PX = 8
LABEL_RECOLOR_DELAY_MS = 250
BACKGROUND_LOAD_OVER = 5000  # faces; a larger run's map loads off the GUI thread
PLOT_BACKGROUND = "#1b1e23"
VOTE_ENTROPY = "vote_entropy"  # the colouring that needs the votes counted
EMPTY_NO_PROJECT = "Open a project to see its embedding map."
EMPTY_NO_RUN = (
    "No trained model yet, so no map.\n\nTrain one in the Training panel (View ▸ Training): "
    "when the run finishes, every face appears here at its place in the model's "
    "embedding.\n\nFrom a terminal: python main.py train PROJECT"
)


class HoverCard(QFrame):
    """The hovered face: its thumbnail, label and the run's verdict."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("hoverCard")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.image = QLabel()
        self.image.setFixedSize(96, 96)
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.RichText)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 6, 8, 6)
        layout.addWidget(self.image)
        layout.addWidget(self.text)
        self.hide()

    def show_at(self, anchor: QPoint) -> None:
        self.adjustSize()
        host = self.parentWidget()
        assert host is not None, "the card is made on the map it floats over"
        parent = host.rect()
        x = anchor.x() + 16 if anchor.x() + 16 + self.width() < parent.width() else anchor.x() - 16 - self.width()
        y = min(max(anchor.y() - self.height() // 2, 0), max(parent.height() - self.height(), 0))
        self.move(max(x, 0), y)
        self.show()
        self.raise_()


class EmbeddingMap(QWidget):
    selection_changed = Signal(object)  # frozenset of face ids, or None

    def __init__(
        self,
        state: ProjectState,
        loader: ThumbnailLoader,
        parent: QWidget | None = None,
        settings: QSettings | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("embeddingMap")
        self.state = state
        self.loader = loader
        self.settings = settings  # keeps the colour mode across restarts
        self.data: RunMap | None = None
        self.selected: frozenset[int] | None = None
        self.highlighted = np.zeros(0, dtype=np.int64)
        self.hovered: int | None = None  # index into the data arrays
        self._faces: dict = {}  # face id -> FaceRow, for hover thumbnails
        self._colors: PointColors | None = None
        # (project, run id, method) of the map being loaded in the background
        self.loading: tuple[Project, int, str | None] | None = None
        self.load_runner = NewestJobRunner(self)
        self.load_runner.succeeded.connect(self._map_loaded)
        self.load_runner.failed.connect(self._map_failed)
        self._votes: dict[int, float] | None = None  # face id -> vote entropy (bits); None: not counted
        self.vote_runner = NewestJobRunner(self)
        self.vote_runner.succeeded.connect(self._votes_counted)
        self.vote_runner.failed.connect(self._votes_failed)

        self.color_combo = QComboBox()
        for key, title in COLOR_MODES.items():
            self.color_combo.addItem(title, key)
        if settings is not None and str(settings.value(studio.KEY_MAP_COLOR, "")) in COLOR_MODES:
            self.set_color_mode(str(settings.value(studio.KEY_MAP_COLOR)))
        self.method_combo = QComboBox()
        # Always its full text: the selection tools sit on their own row, so a narrow dock
        # never clips "Level disagreement" to "Level disa".
        self.color_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.tool_buttons = QButtonGroup(self)
        tools = QHBoxLayout()
        tools.setSpacing(2)
        for tool, text, tip in (
            ("pan", "Pan", "drag to pan, wheel to zoom"),
            ("rect", "Rectangle", "drag a rectangle to select (Shift+drag in Pan)"),
            ("lasso", "Lasso", "draw around faces to select them (Ctrl+drag in Pan)"),
        ):
            button = QToolButton()
            button.setText(text)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.setProperty("tool", tool)
            button.setChecked(tool == "pan")
            self.tool_buttons.addButton(button)
            tools.addWidget(button)
        self.clear_button = QToolButton()
        self.clear_button.setText("Clear")
        self.clear_button.setToolTip("clear the map's selection: the grid shows every face again")
        self.clear_button.setEnabled(False)
        self.info = QLabel()
        self.info.setObjectName("columnHeader")
        self.info.setWordWrap(True)

        self.view = SelectionViewBox()
        self.view.setAspectLocked(True)  # a distance on the map means the same across and down
        self.plot = pg.PlotWidget(viewBox=self.view, background=PLOT_BACKGROUND)
        self.plot.getPlotItem().hideAxis("left")
        self.plot.getPlotItem().hideAxis("bottom")
        self.plot.getPlotItem().setMenuEnabled(False)
        self.plot.getPlotItem().hideButtons()
        self.scatter = pg.ScatterPlotItem(size=POINT_SIZE, pen=None, pxMode=True, antialias=False)
        self.selection_rings = pg.ScatterPlotItem(
            size=POINT_SIZE + 4, pen=pg.mkPen(SELECTION, width=1.5), brush=None, pxMode=True
        )
        self.highlight_rings = pg.ScatterPlotItem(
            size=POINT_SIZE + 8, pen=pg.mkPen("#ffffff", width=2), brush=None, pxMode=True
        )
        for item in (self.scatter, self.selection_rings, self.highlight_rings):
            self.plot.addItem(item)
        # The legend is wrapped text under the map, never over it: a legend inside the plot hid
        # the points in its corner on a 31,000-face FER2013 map.
        self.legend = QLabel()
        self.legend.setObjectName("plotLegend")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self._legend_names: list[str] = []
        self.hover_card = HoverCard(self.plot)
        self._mouse_proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=60, slot=self._mouse_moved)

        self.empty = EmptyState()  # main_window offers the first model's training on it
        self.pages = QStackedWidget()
        self.map_page = QWidget()
        map_layout = QVBoxLayout(self.map_page)
        map_layout.setContentsMargins(0, 0, 0, 0)
        map_layout.setSpacing(0)
        map_layout.addWidget(self.plot, 1)
        map_layout.addWidget(self.legend)
        self.pages.addWidget(self.map_page)
        self.pages.addWidget(self.empty)

        bar = QHBoxLayout()
        bar.setSpacing(6)
        bar.addWidget(QLabel("Colour"))
        bar.addWidget(self.color_combo)
        bar.addWidget(self.method_combo)
        bar.addStretch(1)
        selection_bar = QHBoxLayout()
        selection_bar.setSpacing(6)
        selection_bar.addWidget(QLabel("Select"))
        selection_bar.addLayout(tools)
        selection_bar.addWidget(self.clear_button)
        selection_bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(bar)
        layout.addLayout(selection_bar)
        layout.addWidget(self.info)
        layout.addWidget(self.pages, 1)

        self.color_combo.currentIndexChanged.connect(self._recolor)
        self.color_combo.currentIndexChanged.connect(self._remember_color_mode)
        self.method_combo.currentIndexChanged.connect(self._method_chosen)
        self.tool_buttons.buttonClicked.connect(lambda button: self.view.set_tool(button.property("tool")))
        self.clear_button.clicked.connect(self.clear_selection)
        self.view.rect_drawn.connect(self.select_rect)
        self.view.lasso_drawn.connect(self.select_lasso)
        loader.loaded.connect(self._thumbnail_ready)
        state.project_changed.connect(self._project_changed)
        state.current_run_changed.connect(self.show_run)
        state.map_preview.connect(self.show_preview)
        state.run_finished.connect(self._run_ended)
        self.preview_run: int | None = None  # a running run shown by its PCA map until it ends
        self._keep_view = False  # the map being loaded replaces the shown one in place (a live refit)
        state.contents_changed.connect(self._contents_changed)
        # Corrections come one keystroke after another: recolour once they pause.
        self._recolor_timer = QTimer(self)
        self._recolor_timer.setSingleShot(True)
        self._recolor_timer.setInterval(LABEL_RECOLOR_DELAY_MS)
        self._recolor_timer.timeout.connect(self._labels_changed)
        self._recolor_when_shown = False
        state.labels_changed.connect(lambda _ids: self._recolor_timer.start())
        self._project_changed()

    # -- what is shown ------------------------------------------------------------------------
    def color_mode(self) -> str:
        return self.color_combo.currentData()

    def set_color_mode(self, mode: str) -> None:
        self.color_combo.setCurrentIndex(self.color_combo.findData(mode))

    def _remember_color_mode(self, _index: int) -> None:
        if self.settings is not None:
            self.settings.setValue(studio.KEY_MAP_COLOR, self.color_mode())

    def show_preview(self, run_id: int) -> None:
        """A running run's PCA map, shown while its UMAP map is computed; the finished run
        replaces it (current_run_changed)."""
        self.preview_run = run_id
        self.show_run(run_id, "pca", preview=True)

    def _run_ended(self, run_id: int) -> None:
        # A previewed run that failed or was cancelled during UMAP: back to the current run. (A
        # finished one becomes the current run right after this and replaces the preview.)
        if run_id == self.preview_run and self.state.current_run != run_id:
            self.show_run(self.state.current_run)

    def show_run(self, run_id: int | None, method: str | None = None, preview: bool = False) -> None:
        """Load and show a run's map, or say why there is none. A large run loads in a background
        thread (the window paints and answers meanwhile); a small one at once."""
        if not preview:
            self.preview_run = None
        self.loading = None
        # A live refit's run (placed in its parent's layout) keeps the view, the selection and the
        # old map on screen until the new one is loaded: only the colours change under the cursor.
        self._keep_view = self.state.refreshing_in_place and self.data is not None
        project = self.state.project
        if project is not None and run_id is not None:
            size = self.state.run_size(run_id)
            if size > BACKGROUND_LOAD_OVER:
                if not self._keep_view:
                    self.show_map(None, f"Loading run {run_id}'s map of {size:,} faces…")
                self.loading = (project, run_id, method)
                self.load_runner.request(lambda _progress: self.state.run_map(run_id, method), self.loading)
                return
        self._show_loaded(run_id, self.state.run_map(run_id, method) if run_id is not None else None)

    def _map_loaded(self, tag, data: RunMap | None) -> None:
        if tag == self.loading and tag[0] is self.state.project:
            self.loading = None
            self._show_loaded(tag[1], data)

    def _map_failed(self, tag, exc: BaseException) -> None:
        if tag == self.loading:
            self.loading = None
            self.show_map(None, f"Run {tag[1]}'s map could not be loaded: {exc}")

    def _show_loaded(self, run_id: int | None, data: RunMap | None) -> None:
        if self.state.project is None:
            self.show_map(None, EMPTY_NO_PROJECT)
        elif run_id is None:
            self.show_map(None, EMPTY_NO_RUN)
        elif data is None or not len(data):
            run = next((r for r in self.state.runs() if r.id == run_id), None)
            self.show_map(
                None,
                f"Run {run_id} ({run.status if run else 'unknown'}) has no map: only finished "
                f"runs trained with a projection (umap or pca) have one.\n\nSelect another run "
                f"in the Training panel's history, or train a new one.",
            )
        else:
            self.show_map(data)

    def show_map(self, data: RunMap | None, empty_text: str = "") -> None:
        """Draw `data` (or the empty state with `empty_text`); the selection is cleared, and the
        views it filtered hear so, unless a live refit's map replaces the one shown (then its
        selection and zoom stay)."""
        keep, self._keep_view = self._keep_view and data is not None, False
        kept = self.selected if keep else None
        dropped = self.selected is not None and kept is None
        self._faces.clear()
        self.hover_card.hide()
        self.hovered = None
        self.data = data
        self._set_selection(None)
        if dropped:
            self.selection_changed.emit(None)  # no grid or queue keeps filtering to a selection no longer shown
        if data is None:
            return self._show_empty(empty_text)
        self.method_combo.blockSignals(True)
        self.method_combo.clear()
        for name in data.methods:
            self.method_combo.addItem(name.upper(), name)
        self.method_combo.setCurrentIndex(self.method_combo.findData(data.method))
        self.method_combo.setVisible(len(data.methods) > 1)
        self.method_combo.blockSignals(False)
        self.pages.setCurrentWidget(self.map_page)
        self._recolor()
        if kept is not None:
            self._set_selection(kept)
        if not keep:
            self.view.autoRange(padding=0.04)
        self.highlight(self.highlighted_ids())

    def _show_empty(self, text: str) -> None:
        self.empty.setText(text)
        self.pages.setCurrentWidget(self.empty)
        self.info.setText("")
        self.method_combo.setVisible(False)
        self.scatter.clear()
        self.selection_rings.clear()
        self.highlight_rings.clear()
        self._set_legend([])

    def _describe(self) -> str:
        data = self.data
        assert data is not None, "described only while a map is shown"
        text = f"Run {data.run_id} · {data.method.upper()} map of {len(data):,} faces"
        if data.run_id == self.preview_run:
            text += " · PCA preview while the UMAP map is computed (the run is still running)"
        elif data.method == "pca" and "umap" not in data.methods:
            text += " · PCA only: this run has no UMAP projection (it was trained with --projection pca)"
        if self._colors is not None and self._colors.note:
            text += f" · {self._colors.note}"
        return text

    def _recolor(self, *_args) -> None:
        if self.data is None:
            return
        mode = self.color_mode()
        if mode == VOTE_ENTROPY and self._votes is None and not self.vote_runner.busy:
            self._count_votes()
        self._colors = colors = color_points(self.data, mode, self._vote_bits() if mode == VOTE_ENTROPY else None)
        order = colors.order
        # Arrays in, one call: no per-point items (hover and selection use self.data, not spots).
        self.scatter.setData(
            x=self.data.xy[order, 0],
            y=self.data.xy[order, 1],
            brush=colors.brushes[order],
            size=colors.sizes[order] if colors.sizes is not None else POINT_SIZE,
        )
        self._set_legend(colors.legend)
        self.info.setText(self._describe())

    def _set_legend(self, entries: list[tuple[str, QColor]]) -> None:
        self._legend_names = [name for name, _ in entries]
        # An entry never breaks inside itself ("unlabeled (27,310)"), only between entries.
        self.legend.setText(
            " &nbsp; ".join(
                f"<span style='color:{color.name()}'>●</span>&nbsp;{html.escape(name).replace(' ', '&nbsp;')}"
                for name, color in entries
            )
        )

    def legend_names(self) -> list[str]:
        """What the colours mean, as the legend under the map shows it."""
        return list(self._legend_names)

    def _method_chosen(self, _index: int) -> None:
        method = self.method_combo.currentData()
        if self.data is not None and method and method != self.data.method:
            self.show_run(self.data.run_id, method)

    def _project_changed(self) -> None:
        self._votes = None
        self.show_run(self.state.current_run)

    def _count_votes(self) -> None:
        api = self.state.api
        if api is not None:
            self.vote_runner.request(lambda _progress: api.team.vote_entropy(), self.state.project)

    def _votes_counted(self, project, entropy: dict[int, float]) -> None:
        if project is self.state.project:
            self._votes = entropy
            if self.color_mode() == VOTE_ENTROPY:
                self._recolor()

    def _votes_failed(self, project, exc: BaseException) -> None:
        if project is self.state.project and self.data is not None:
            self.info.setText(f"{self._describe()} · the votes could not be read: {exc}")

    def _vote_bits(self) -> np.ndarray | None:
        """The vote entropy of each face of the map shown, NaN for fewer than two votes."""
        if self._votes is None or self.data is None:
            return None
        votes = self._votes
        return np.array([votes.get(int(f), np.nan) for f in self.data.ids], dtype=np.float32)

    def _labels_changed(self) -> None:
        """After corrections pause: recolour now if the map is on screen, else when it is shown
        (recolouring 30,000 points takes a few hundred milliseconds)."""
        if self.isVisible():
            self._contents_changed()
        else:
            self._recolor_when_shown = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._recolor_when_shown:
            self._recolor_when_shown = False
            self._contents_changed()

    def _contents_changed(self) -> None:
        """Labels changed (an import, a correction): recolour from the current labels alone;
        the run's positions and predictions are what they were."""
        if self.data is None:
            return
        # A vote can change without changing the label: count again now, or when the colouring is chosen.
        if self.color_mode() == VOTE_ENTROPY:
            self._count_votes()
        else:
            self._votes = None
        labels = self.state.labels_of(self.data.ids)
        if labels is not None and not np.array_equal(labels, self.data.labels):
            self.data.labels = labels
            self._recolor()
            if self.selected is not None:
                self._set_selection(self.selected)
            self._faces.clear()  # hover cards show the new label too

    # -- selection ----------------------------------------------------------------------------
    def select_rect(self, corner_a, corner_b) -> frozenset[int]:
        return self._select_mask(points_in_rect(self.data.xy, corner_a, corner_b) if self.data else None)

    def select_lasso(self, polygon) -> frozenset[int]:
        return self._select_mask(points_in_polygon(self.data.xy, polygon) if self.data else None)

    def _select_mask(self, mask) -> frozenset[int]:
        ids = frozenset(self.data.ids[mask].tolist()) if mask is not None and self.data is not None else frozenset()
        self._set_selection(ids)
        self.selection_changed.emit(ids)
        return ids

    def clear_selection(self) -> None:
        if self.selected is not None:
            self._set_selection(None)
            self.selection_changed.emit(None)

    def _set_selection(self, ids: frozenset[int] | None) -> None:
        self.selected = ids
        self.clear_button.setEnabled(ids is not None)
        if ids is None or self.data is None:
            self.selection_rings.clear()
            return
        mask = np.isin(self.data.ids, np.fromiter(ids, np.int64, len(ids)))
        self.selection_rings.setData(pos=self.data.xy[mask])
        self.info.setText(self._describe() + f" · {int(mask.sum()):,} selected")

    def highlighted_ids(self) -> list[int]:
        return self.highlighted.tolist()

    def highlight(self, face_ids) -> None:
        """Ring these faces (the grid's selection); others are left as they are."""
        self.highlighted = np.asarray(list(face_ids), dtype=np.int64)
        if self.data is None or not len(self.highlighted):
            self.highlight_rings.clear()
            return
        self.highlight_rings.setData(pos=self.data.xy[np.isin(self.data.ids, self.highlighted)])

    # -- hover --------------------------------------------------------------------------------
    def point_near(self, scene_pos: QPointF, radius_px: float = HOVER_RADIUS_PX) -> int | None:
        """Index of the point nearest to a scene position, if within `radius_px` on screen."""
        if self.data is None or not len(self.data) or not self.view.sceneBoundingRect().contains(scene_pos):
            return None
        point = self.view.mapSceneToView(scene_pos)
        pixel_w, pixel_h = self.view.viewPixelSize()
        dx = (self.data.xy[:, 0] - point.x()) / max(pixel_w, 1e-12)
        dy = (self.data.xy[:, 1] - point.y()) / max(pixel_h, 1e-12)
        distance = dx * dx + dy * dy
        nearest = int(np.argmin(distance))
        return nearest if distance[nearest] <= radius_px**2 else None

    def _mouse_moved(self, args) -> None:
        scene_pos = args[0]
        index = self.point_near(scene_pos)
        if index is None:
            self.hovered = None
            self.hover_card.hide()
            return
        self.hovered = index
        self._fill_hover_card(index)
        self.hover_card.show_at(self.plot.mapFromScene(scene_pos))

    def _fill_hover_card(self, index: int) -> None:
        data = self.data
        assert data is not None, "a hovered point is a point of the map shown"
        face_id = int(data.ids[index])
        face = self._faces.get(face_id)
        if face is None:
            face = self._faces[face_id] = self.state.faces_by_id([face_id]).get(face_id)
        pixmap = self.loader.pixmap(face) if face is not None else None
        if pixmap is not None:
            self.hover_card.image.setPixmap(pixmap)
        else:
            self.hover_card.image.clear()
        names = class_names()
        label = names[data.labels[index]] if data.labels[index] >= 0 else "unlabeled"
        pseudo = names[data.pseudo[index]] if data.pseudo[index] >= 0 else "none"
        lines = [
            f"<b>face {face_id}</b>" + (f" · {face.split}" if face else ""),
            f"label: {label}",
            f"pseudo-label: {pseudo}",
        ]
        if np.isfinite(data.confidence[index]):
            lines.append(f"confidence: {data.confidence[index]:.2f}")
        if data.disagreement is not None and np.isfinite(data.disagreement[index]):
            lines.append(f"level disagreement: {data.disagreement[index]:.2f} bits")
        if self._votes is not None and face_id in self._votes:
            lines.append(f"vote entropy: {self._votes[face_id]:.2f} bits")
        self.hover_card.text.setText("<br>".join(lines))

    def shutdown(self) -> None:
        self.load_runner.wait()
        self.vote_runner.wait()

    def _thumbnail_ready(self, face_id: int) -> None:
        if self.hovered is not None and self.data is not None and int(self.data.ids[self.hovered]) == face_id:
            self._fill_hover_card(self.hovered)
