"""The main window: project panel | face grid and review queue (tabs), the face details,
embedding map, training and agreement docks, menus, a status bar.

The window only assembles widgets and routes menu actions; the project lives in ProjectState,
thumbnails in ThumbnailLoader, imports in ImportController, training in TrainingPanel (its worker
is a separate process), the annotator's keys in LabelingController. Panels listen to the same
state; the map's selection filters the grid and the review queue, and the grid's selection is
ringed on the map.
A project without a finished run offers "Train a first model" (the default settings) where the
queue and the map would be; the very first start, on the demo it builds, trains one by itself.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QWidget,
)

from app import settings as studio
from app.agreement_panel import AgreementPanel
from app.annotator_field import AnnotatorField
from app.description_editor import DescriptionEditor
from app.detail_panel import DetailPanel
from app.dialogs import Dialogs
from app.embedding_map import EmbeddingMap
from app.export_model_dialog import ExportModelDialog
from app.face_grid import FaceGrid
from app.face_model import FaceListModel
from app.feature_job import FeatureJobBar
from app.help_dialogs import AboutDialog, UserGuideDialog
from app.import_flow import ImportController, is_importable
from app.labeling_controller import MESSAGE_MS, LabelingController
from app.live_refit import LiveRefit
from app.predict_view import KEY_PREDICT_FOLDER, PredictView, run_to_predict_with
from app.project_panel import ProjectPanel
from app.project_state import ProjectState
from app.review_queue import ReviewQueueView
from app.shortcut_help import KeySection, ShortcutHelp, menu_key_rows
from app.startup import DemoBuilder, PreparingPage
from app.status_bar import StudioStatusBar
from app.team_poller import TeamPoller
from app.thumbnail_loader import ThumbnailLoader
from app.training_panel import TrainingPanel
from app.warm_worker import WarmWorker
from app.widgets import ElidedLabel
from core.ingest.demo import DemoSettings
from core.paths import default_demo_project
from core.store.project import Project, ProjectError

APP_TITLE = "FER Studio"
WORKER_MESSAGE_MS = 15_000
DOCK_WIDTH = 420  # the right-hand docks' first width: the grid keeps two columns in a 1000 px window
PATH_MAX_WIDTH = 320  # px of the status bar's project path (elided, the whole path in its tooltip)


class DockScrollArea(QScrollArea):
    """A tall panel in a scroll area, so its dock never forces the window's height: the panel
    fills the area and scrolls only below its minimum size. (widgetResizable would size it by
    its word-wrapped labels' preferred heights, far taller than the area.) It asks for no more
    than DOCK_WIDTH, so a first start leaves the grid its room."""

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(min(hint.width(), DOCK_WIDTH), hint.height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        widget = self.widget()
        if widget is not None:
            least = widget.minimumSizeHint()
            # The area has no frame: its size is the viewport's plus a scroll bar where one is needed.
            bar = self.verticalScrollBar().sizeHint().width() if least.height() > self.height() else 0
            widget.resize(max(self.width() - bar, least.width()), max(self.height(), least.height()))


def scrollable(widget: QWidget) -> QScrollArea:
    area = DockScrollArea()
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(widget)
    return area


class MainWindow(QMainWindow):
    def __init__(self, dialogs=None, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.settings = settings or studio.studio_settings()
        self.dialogs = dialogs or Dialogs(self)
        self.state = ProjectState(self)
        self.loader = ThumbnailLoader(parent=self)
        self.model = FaceListModel(self.state, self.loader, self)
        self.importer = ImportController(self.state, self.dialogs, self)
        self.demo_builder: DemoBuilder | None = None
        self._train_when_opened = False  # the first start: train a first model on the new demo

        self.panel = ProjectPanel(self.state)
        self.grid = FaceGrid(self.model)
        self.empty_hint = QLabel()
        self.empty_hint.setObjectName("emptyHint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.grid_area = QStackedWidget()
        self.grid_area.addWidget(self.grid)
        self.grid_area.addWidget(self.empty_hint)
        self.preparing = PreparingPage()
        self.grid_area.addWidget(self.preparing)
        self.review = ReviewQueueView(self.state, self.loader)
        self.center_tabs = QTabWidget()
        self.center_tabs.setObjectName("centerTabs")
        self.center_tabs.setDocumentMode(True)
        self.center_tabs.addTab(self.grid_area, "All faces")
        self.center_tabs.addTab(self.review, "Review queue")
        # Predictions on photos outside the project: a wide table, so a tab of the centre (app/predict_view.py).
        self.predictions = PredictView(self.state, self.dialogs, self.settings)
        self.center_tabs.addTab(self.predictions, "Predictions")

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.panel)
        self.splitter.addWidget(self.center_tabs)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.panel.setMinimumWidth(230)
        self.splitter.setSizes([270, 1010])
        self.setCentralWidget(self.splitter)

        self.map_view = EmbeddingMap(self.state, self.loader, settings=self.settings)
        self.training = TrainingPanel(self.state)
        self.map_dock = self._dock("Embedding map", "mapDock", self.map_view)
        self.training_dock = self._dock("Training", "trainingDock", scrollable(self.training))
        self.detail = DetailPanel(self.state, self.loader)
        self.detail_dock = self._dock("Face details", "detailDock", self.detail)
        self.tabifyDockWidget(self.map_dock, self.training_dock)
        self.tabifyDockWidget(self.map_dock, self.detail_dock)
        self.agreement = AgreementPanel(self.state)
        self.agreement_dock = self._dock("Agreement", "agreementDock", scrollable(self.agreement))
        self.tabifyDockWidget(self.map_dock, self.agreement_dock)
        self.map_dock.raise_()
        self.resizeDocks([self.map_dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)

        self.labeling = LabelingController(self.state, self.dialogs, self.settings, self)
        self.labeling.add_grid(self.grid)
        self.labeling.add_grid(self.review.grid, queue_model=self.review.model)
        self.review.set_annotator(self.labeling.annotator)  # the to_vote queue is the annotator's
        self.labeling.annotator_changed.connect(self.review.set_annotator)
        self.team_poller = TeamPoller(self.state, lambda: self.labeling.annotator, parent=self)  # others' votes, live
        self.help_overlay = ShortcutHelp(self, self.key_sections, fallback_focus=lambda: self.labeling.active_grid)
        # The warm worker process runs while a project is open; corrections trigger its refits.
        self.warm_worker = WarmWorker(self)
        self.live_refit = LiveRefit(
            self.state, self.warm_worker, self.settings, held_by=self._refit_held_by, parent=self
        )
        self.description_editor: DescriptionEditor | None = None
        self.guide_dialog: UserGuideDialog | None = None
        self.about_dialog: AboutDialog | None = None
        self.export_dialog: ExportModelDialog | None = None

        # Counts and messages elide in a left part of fixed demand: the permanent widgets stay put.
        self.status_bar = StudioStatusBar(self)
        self.setStatusBar(self.status_bar)
        self.counts_label = self.status_bar.info
        self.run_label = QLabel()
        self.path_label = ElidedLabel()
        self.path_label.setMaximumWidth(PATH_MAX_WIDTH)  # the project panel shows the path in full
        self.statusBar().addPermanentWidget(FeatureJobBar(self.importer.features))  # after an import
        self.statusBar().addPermanentWidget(self.run_label)
        self.refit_label = QLabel(self.live_refit.status_text())
        self.refit_label.setObjectName("refitStatus")
        self.refit_label.setToolTip(
            "Live refits: the model is refitted on the cached features after every "
            f"{self.live_refit.policy.every} corrections or a pause; Review ▸ Refit the "
            "model while labeling turns them off"
        )
        self.statusBar().addPermanentWidget(self.refit_label)
        self.annotator_field = AnnotatorField(self.labeling, self.dialogs)
        self.statusBar().addPermanentWidget(self.annotator_field)
        self.statusBar().addPermanentWidget(self.path_label)

        self._build_menus()
        self.panel.filter_changed.connect(self.model.set_filter)
        self.map_view.selection_changed.connect(self.model.set_id_filter)
        self.map_view.selection_changed.connect(self.review.set_map_selection)
        self.review.clear_selection_requested.connect(self.map_view.clear_selection)
        self.grid.selected_ids_changed.connect(self.map_view.highlight)
        self.training.busy_changed.connect(self._set_busy)
        for empty in (self.review.empty, self.map_view.empty):
            empty.action_clicked.connect(self.train_first_model)
        for signal in (
            self.state.project_changed,
            self.state.run_finished,
            self.state.current_run_changed,
            self.training.busy_changed,
        ):
            signal.connect(self._offer_first_model)
        self.state.project_changed.connect(self._project_changed)
        self.state.contents_changed.connect(self._update_status)
        self.model.modelReset.connect(self._update_status)
        self.importer.busy_changed.connect(self._set_busy)
        self.state.counts_changed.connect(self._update_status)
        self.state.current_run_changed.connect(self._update_status)
        self.labeling.face_shown.connect(self.detail.show_face)
        self.labeling.upcoming.connect(self.detail.prefetch)
        self.labeling.message.connect(lambda text: self.statusBar().showMessage(text, MESSAGE_MS))
        self.team_poller.message.connect(lambda text: self.statusBar().showMessage(text, MESSAGE_MS))
        self.live_refit.status_changed.connect(self.refit_label.setText)
        self.warm_worker.trouble.connect(self._worker_trouble)
        self.center_tabs.currentChanged.connect(self._center_tab_changed)
        for signal in (self.state.project_changed, self.state.run_finished, self.state.current_run_changed):
            signal.connect(self._update_model_actions)
        self._restore_layout()
        self._project_changed()
        self._update_model_actions()

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState/restoreState find docks by name
        dock.setWidget(widget)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    # -- menus -------------------------------------------------------------------------------
    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        menu.setToolTipsVisible(True)  # a disabled item's tooltip says why it waits (_set_busy)
        self.new_action = self._action(menu, "&New project…", self.ask_new_project, QKeySequence.StandardKey.New)
        self.open_action = self._action(menu, "&Open project…", self.ask_open_project, QKeySequence.StandardKey.Open)
        self.recent_menu = menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.demo_action = self._action(menu, "Open &demo project", self.open_demo_project)
        menu.addSeparator()
        self.import_folder_action = self._action(menu, "Import &folder…", self.ask_import_folder, "Ctrl+I")
        self.import_csv_action = self._action(menu, "Import &CSV…", self.ask_import_csv, "Ctrl+Shift+I")
        menu.addSeparator()
        self.predict_action = self._action(menu, "&Predict a folder…", self.ask_predict_folder)
        self.predict_action.setStatusTip("run the current model on a folder of photos outside the project")
        self.export_model_action = self._action(menu, "E&xport model…", self.show_export_model)
        self.export_model_action.setStatusTip("save a finished run as an ONNX or TorchScript model with its card")
        menu.addSeparator()
        self._action(menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self._project_actions = (
            self.new_action,
            self.open_action,
            self.recent_menu.menuAction(),
            self.demo_action,
            self.import_folder_action,
            self.import_csv_action,
        )
        edit = self.menuBar().addMenu("&Edit")
        edit.addAction(self.labeling.undo_action)
        edit.addAction(self.labeling.redo_action)
        view = self.menuBar().addMenu("&View")
        for dock, shortcut in (
            (self.map_dock, "Ctrl+M"),
            (self.training_dock, "Ctrl+T"),
            (self.detail_dock, "Ctrl+D"),
            (self.agreement_dock, "Ctrl+G"),
        ):
            view.addAction(self._dock_action(dock, shortcut))
        review = self.menuBar().addMenu("&Review")
        self._action(review, "Review &queue", self.show_review, "Ctrl+R").setStatusTip("open the review queue")
        self._action(review, "&Refresh the queue", self.review.refresh, "F5").setStatusTip("rebuild the review queue")
        self.labeling.add_label_actions(review.addMenu("&Label"))
        review.addSeparator()
        self._action(review, "Class &descriptions (text level)…", self.edit_descriptions)
        self.change_annotator_action = self._action(review, "Change &annotator…", self.annotator_field.change)
        self.live_refit_action = self._action(review, "Refit the model &while labeling", self.live_refit.set_enabled)
        self.live_refit_action.setCheckable(True)
        self.live_refit_action.setChecked(self.live_refit.enabled)
        help_menu = self.menuBar().addMenu("&Help")
        help_action = self._action(help_menu, "&Keyboard shortcuts", self.help_overlay.toggle)
        help_action.setShortcuts([QKeySequence("F1"), QKeySequence("?")])
        help_action.setStatusTip("show or hide this help")
        help_menu.addSeparator()
        self.guide_action = self._action(help_menu, "&User guide", self.show_user_guide)
        self.guide_action.setStatusTip("a short guide: projects, training, the review keys, the map, live refits")
        self.about_action = self._action(help_menu, "&About FER Studio", self.show_about)
        self.about_action.setStatusTip("the version, and the licences of the studio and of the model weights it runs")

    def key_sections(self) -> list[KeySection]:
        """The help card's keys, read from what makes them work (app/shortcut_help.py)."""
        return [("In the face grids", self.labeling.key_rows()), ("Window", menu_key_rows(self.menuBar()))]

    def show_user_guide(self) -> UserGuideDialog:
        """The guide in a window of its own, kept open beside the faces while you try it."""
        if self.guide_dialog is None:
            self.guide_dialog = UserGuideDialog(self)
        self.guide_dialog.show()
        self.guide_dialog.raise_()
        return self.guide_dialog

    def show_about(self) -> AboutDialog:
        if self.about_dialog is None:
            self.about_dialog = AboutDialog(self)
        self.about_dialog.show()
        self.about_dialog.raise_()
        return self.about_dialog

    # -- the first model ---------------------------------------------------------------------
    def train_first_model(self) -> bool:
        """Train with the default settings and show the training panel's progress."""
        if self.state.project is None or self.training.busy:
            return False
        self.training_dock.show()
        self.training_dock.raise_()
        started = self.training.start_defaults()
        self._offer_first_model()
        return started

    def _offer_first_model(self, *_args) -> None:
        """Until a project has a finished run, the queue's and the map's empty pages offer one."""
        api = self.state.api
        offer = api is not None and not api.runs.has_finished_run()
        if not offer:
            text, enabled = None, False
        elif self.training.busy:
            text, enabled = "Training… (progress in the Training panel)", False
        else:
            text, enabled = f"Train a first model ({self.training.form.steps_text()})", True
        for empty in (self.review.empty, self.map_view.empty):
            empty.set_action(text, enabled)

    # -- review ------------------------------------------------------------------------------
    def _dock_action(self, dock: QDockWidget, shortcut: str) -> QAction:
        """View ▸ <panel>, checked while the panel is open. Unlike Qt's own toggleViewAction,
        which hides an open panel even when it is a tab behind another (the annotator pressing
        its key wanted to see it), a panel that is open but out of sight is brought to the front."""
        action = QAction(dock.windowTitle(), self, checkable=True)
        action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(f"show or hide the {dock.windowTitle().lower()} panel")
        action.setChecked(dock.toggleViewAction().isChecked())
        dock.toggleViewAction().toggled.connect(action.setChecked)  # its close button, a saved layout

        def show_or_hide() -> None:
            if dock.isHidden():
                dock.show()
                dock.raise_()
            elif dock.visibleRegion().isEmpty():  # open, as a tab behind another panel
                dock.raise_()
            else:
                dock.hide()
            action.setChecked(not dock.isHidden())

        action.triggered.connect(show_or_hide)
        return action

    def show_review(self) -> None:
        self.center_tabs.setCurrentWidget(self.review)

    def _center_tab_changed(self, _index: int) -> None:
        if self.center_tabs.currentWidget() is self.predictions:
            return  # no face grid there: the labeling keys stay with the grid shown last
        reviewing = self.center_tabs.currentWidget() is self.review
        grid = self.review.grid if reviewing else self.grid
        self.labeling.set_active_grid(grid)
        if reviewing and self.detail_dock.toggleViewAction().isChecked():
            self.detail_dock.raise_()  # reviewing needs the evidence beside the faces
        grid.setFocus()

    def edit_descriptions(self) -> None:
        if self.state.project is None:
            self.dialogs.error("Class descriptions", "Open a project first: the descriptions are saved with it.")
            return
        if self.description_editor is None or not self.description_editor.isVisible():
            self.description_editor = DescriptionEditor(self.state, self.dialogs, self)
        self.description_editor.show()
        self.description_editor.raise_()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = studio.recent_projects(self.settings)
        for path in recent:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_project(p))
        if not recent:
            self.recent_menu.addAction("No recent projects").setEnabled(False)

    def _refit_held_by(self) -> str | None:
        """Why a live refit must wait now: the cores are busy with the studio's other work."""
        if self.training.busy:
            return "the training run"
        if self.importer.busy:
            return "the import"
        if self.importer.features.running:
            return "the feature job"
        return None

    def _worker_trouble(self, message: str, gave_up: bool) -> None:
        """The warm worker stopped: one status-bar message per restart, one dialog on giving up."""
        if gave_up:
            self.dialogs.error("Model worker stopped", message)
        else:
            self.statusBar().showMessage(message, WORKER_MESSAGE_MS)

    def _project_actions_wait_for(self) -> str | None:
        """Why File's project and import actions wait now (said in their tooltips), or None."""
        if self.training.busy:
            return "Not while a run is training: cancel it in the Training dock, or let it finish"
        if self.importer.busy:
            return "Not while an import runs: wait for it to finish, or cancel it"
        if self.demo_builder is not None:
            return "Not while the demo project is being prepared"
        return None

    def _set_busy(self, _busy: bool = False) -> None:
        """Enable File's project and import actions, or say on each one why it waits."""
        why = self._project_actions_wait_for()
        imports = (self.import_folder_action, self.import_csv_action)
        for action in self._project_actions:
            reason = why
            if reason is None and self.state.project is None and any(action is a for a in imports):
                reason = "Open a project first: faces are imported into the open project"
            action.setEnabled(reason is None)
            action.setToolTip(reason or "")
        self._update_status()

    # -- projects ----------------------------------------------------------------------------
    def _can_switch(self) -> bool:
        if self.importer.busy:
            self.dialogs.error("Import running", "Wait for the import to finish before switching projects.")
            return False
        if self.training.busy:
            self.dialogs.error(
                "Training running", "Cancel the training run (or let it finish) before switching projects."
            )
            return False
        if self.description_editor is not None and self.description_editor.busy:
            self.dialogs.error(
                "Re-scoring running", "Wait for the re-scoring of the run to finish before switching projects."
            )
            return False
        return self._close_description_editor()  # it saves into the project that is open

    def _close_description_editor(self) -> bool:
        """Close the description editor, asking about unsaved edits; False: the annotator keeps it."""
        editor = self.description_editor
        if editor is None or not editor.isVisible() or editor.busy:
            return True  # busy: its edits are saved already, closeEvent waits for the re-scoring
        return editor.close()

    def open_project(self, path: str | Path) -> bool:
        """Open the project at `path`; on error say why and keep the current project."""
        if not self._can_switch():
            return False
        try:
            project = self.state.open(path)
        except ProjectError as exc:
            self.dialogs.error("Cannot open project", str(exc))
            return False
        studio.remember_project(project.root, self.settings)
        return True

    def new_project(self, path: str | Path) -> bool:
        if not self._can_switch():
            return False
        try:
            project = Project.create(path)
        except (ProjectError, OSError) as exc:
            self.dialogs.error("Cannot create project", str(exc))
            return False
        self.state.set_project(project)
        studio.remember_project(project.root, self.settings)
        return True

    def ask_new_project(self) -> None:
        path = self._ask_folder("New project: choose an empty folder", studio.KEY_PROJECT_FOLDER)
        if path:
            self.new_project(path)

    def ask_open_project(self) -> None:
        path = self._ask_folder("Open project folder", studio.KEY_PROJECT_FOLDER)
        if path:
            self.open_project(path)

    def _ask_folder(self, title: str, key: str) -> str | None:
        """A folder dialog opening where the last of its kind was chosen (else the home folder)."""
        path = self.dialogs.choose_folder(title, studio.start_folder(self.settings, key))
        if path:
            studio.remember_folder(self.settings, key, path)
        return path

    def open_demo_project(
        self, demo_settings: DemoSettings = DemoSettings(), path: Path | None = None, train_first_model: bool = False
    ) -> None:
        """Open the demo project, building it in the background first when it is not there;
        `train_first_model`: then train a model on it with the default settings (first start)."""
        path = Path(path or default_demo_project())
        if self.demo_builder is not None or not self._can_switch():
            return
        self._train_when_opened = train_first_model
        builder = DemoBuilder(path, self, demo_settings)
        self.statusBar().showMessage("Preparing the demo project…")
        builder.ready.connect(self._demo_ready)
        builder.failed.connect(self._demo_failed)
        self.demo_builder = builder
        self._set_busy()  # the project actions wait, the centre says what is happening
        builder.start()

    def _demo_ready(self, path: str) -> None:
        self.demo_builder = None
        self._set_busy()
        self.statusBar().clearMessage()
        train, self._train_when_opened = self._train_when_opened, False
        api = self.state.api if self.open_project(path) else None
        if api is not None and train and not api.runs.has_finished_run():
            self.show_review()
            self.train_first_model()
            self.statusBar().showMessage(
                "Training a first model on the demo: its review queue and map appear when it finishes.", 15_000
            )

    def _demo_failed(self, message: str) -> None:
        self.demo_builder = None
        self._set_busy()
        self.statusBar().clearMessage()
        self.dialogs.error("Demo project", message)

    def _project_changed(self) -> None:
        root = self.state.root
        self.setWindowTitle(f"{root.name} — {APP_TITLE}" if root else APP_TITLE)
        self.path_label.setText(str(root) if root else "")
        self._set_busy()  # the import actions need an open project

    def _update_status(self) -> None:
        stats = self.state.stats()
        shown = self.model.rowCount()
        run = self.state.current_run
        self.run_label.setText(f"run {run}" if run is not None else "no run yet")
        if stats is None:
            self.counts_label.setText("No project open")
            self.empty_hint.setText("No project open.\nUse File ▸ Open project… or File ▸ Open demo project.")
        else:
            self.counts_label.setText(
                f"{stats['images']:,} faces  ·  {stats['labeled']:,} labeled  ·  "
                f"{stats['unlabeled']:,} unlabeled  ·  {self.state.labeled_today():,} labeled today  ·  "
                f"showing {shown:,}" + ("  (selected on the map)" if self.model.id_filter is not None else "")
            )
            self.empty_hint.setText(
                "This project has no faces yet.\nDrop a folder or a CSV file here, or use File ▸ Import folder…"
                if not stats["images"]
                else "No faces match these filters"
                + (" and the map's selection." if self.model.id_filter is not None else ".")
            )
        if self.demo_builder is not None and self.demo_builder.builds:
            self.grid_area.setCurrentWidget(self.preparing)  # in place of "No project open"
        else:
            self.grid_area.setCurrentWidget(self.grid if shown else self.empty_hint)

    # -- predictions and exported models -----------------------------------------------------
    def _model_actions_wait_for(self) -> str | None:
        """Why Predict a folder… and Export model… wait now (said in their tooltips), or None."""
        if self.state.api is None:
            return "Open a project first: its trained model makes the predictions"
        if run_to_predict_with(self.state) is None:
            return "Train a model first: only a finished run can predict or be exported"
        return None

    def _update_model_actions(self, *_args) -> None:
        why = self._model_actions_wait_for()
        for action in (self.predict_action, self.export_model_action):
            action.setEnabled(why is None)
            action.setToolTip(why or action.statusTip())

    def ask_predict_folder(self) -> bool:
        """Ask for a folder of photos and predict its faces in the background (the Predictions tab)."""
        path = self._ask_folder("Predict the faces in a folder of photos", KEY_PREDICT_FOLDER)
        return path is not None and self.predict([path])

    def predict(self, inputs: list[str]) -> bool:
        started = self.predictions.start(inputs)
        if started:
            self.center_tabs.setCurrentWidget(self.predictions)
        return started

    def show_export_model(self) -> ExportModelDialog | None:
        if self.state.api is None:
            return None
        dialog = self.export_dialog
        if dialog is None or not (dialog.isVisible() or dialog.running):
            dialog = self.export_dialog = ExportModelDialog(self.state, self.dialogs, self.settings, self)
        dialog.show()
        dialog.raise_()
        return dialog

    # -- imports -----------------------------------------------------------------------------
    def ask_import_folder(self) -> None:
        path = self._ask_folder(
            "Import a folder of faces (one sub-folder per class, or flat)", studio.KEY_IMPORT_FOLDER
        )
        if path:
            self.importer.begin(path)

    def ask_import_csv(self) -> None:
        start = studio.start_folder(self.settings, studio.KEY_IMPORT_FOLDER)
        path = self.dialogs.choose_file("Import a CSV manifest", "CSV manifests (*.csv *.tsv);;All files (*)", start)
        if path:
            studio.remember_folder(self.settings, studio.KEY_IMPORT_FOLDER, path)
            self.importer.begin(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_path(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_path(event)
        if path is not None:
            event.acceptProposedAction()
            self.importer.begin(path)

    @staticmethod
    def _dropped_path(event) -> str | None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if len(urls) == 1 and urls[0].isLocalFile() and is_importable(urls[0].toLocalFile()):
            return urls[0].toLocalFile()
        return None

    # -- persistence -------------------------------------------------------------------------
    def _restore_layout(self) -> None:
        geometry = self.settings.value(studio.KEY_GEOMETRY)
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 800)
        state = self.settings.value(studio.KEY_WINDOW_STATE)
        if state is not None:
            self.restoreState(state)
        splitter = self.settings.value(studio.KEY_SPLITTER)
        if splitter is not None:
            self.splitter.restoreState(splitter)

    def save_layout(self) -> None:
        self.settings.setValue(studio.KEY_GEOMETRY, self.saveGeometry())
        self.settings.setValue(studio.KEY_WINDOW_STATE, self.saveState())
        self.settings.setValue(studio.KEY_SPLITTER, self.splitter.saveState())
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._close_description_editor():
            event.ignore()
            return
        if self.importer.busy:
            self.importer.cancel()
            self.importer.wait()
        if self.demo_builder is not None and self.demo_builder.job is not None:
            self.demo_builder.job.wait()
        self.training.shutdown()
        self.team_poller.shutdown()
        self.warm_worker.shutdown()
        self.labeling.wait()
        if self.description_editor is not None:
            self.description_editor.wait()
        self.review.shutdown()
        self.predictions.shutdown()
        if self.export_dialog is not None:
            self.export_dialog.shutdown()
        self.detail.shutdown()
        self.map_view.shutdown()
        self.agreement.shutdown()
        self.save_layout()
        self.loader.shutdown()
        self.state.close()
        super().closeEvent(event)
