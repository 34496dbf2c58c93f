"""The annotator's keyboard and menu actions on the face grids, done through core.labeling.

Keys act on the grid that has focus (the review queue or the all-faces grid): 1-7 (the keys in
core/resources/classes.json) give the current face its label and move on to the next face; Enter
accepts the run's suggestion; Space skips; Backspace/Delete clears the label; arrows move (the
grid's own keys). With several faces selected (by hand, or everything the embedding map's lasso
left in the grid), a number, Enter or Backspace changes them all as one undoable step; faces of
val/test and faces already labeled are left out unless the annotator includes them (the question
above BULK_CONFIRM_OVER faces, or the context menu; see app/bulk_scope.py). Every change is
committed at once (one transaction in core.labeling) and announced with
ProjectState.notify_labels_changed, so the grids, the detail panel, the counts and the status bar
follow. Changes go through the project's studio API (core.studio_api), whose answer says what
changed and whether this annotator can undo or redo now: the Undo and Redo actions enable
themselves from it (and from the log when a project opens or the annotator changes). Undo and
redo come from the corrections log, so they work after a restart too. A bulk step on more than
BACKGROUND_BULK_OVER faces is written off the GUI thread; other changes wait until it is saved.

In the adjudication queue (the review queue showing the `adjudication` strategy's faces, whose
votes disagree), 1-7 and Enter give the current face the adjudicator's final word
(core.labeling's set_label(adjudicate=True)): it decides the label over any majority, the status
bar says so, and Ctrl+Z takes it back like any step. One face at a time, and never a clearing:
an adjudication names a class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeVar

from PySide6.QtCore import QEvent, QObject, QPoint, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QMenu
from sqlalchemy.exc import SQLAlchemyError

from app.background import BackgroundJob
from app.bulk_scope import EVERYTHING, BulkAction, BulkScope, ask_scope
from app.face_grid import GRID_OWN_KEYS, FaceGrid
from app.project_state import ProjectState
from core import labeling
from core.classes import expression_classes
from core.labeling import LabelingError, LabelStep
from core.store.errors import explain_storage_error
from core.studio_api import Change, StudioApi

KEY_ANNOTATOR = "review/annotator"
INCLUDE_MENU = "Include labeled and val/test"  # the context menu's bulk steps on the whole selection
MESSAGE_MS = 6000
UNDO_KEYS = (QKeySequence.StandardKey.Undo,)
REDO_KEYS = ("Ctrl+Shift+Z", "Ctrl+Y")
BACKGROUND_BULK_OVER = 500  # faces: a bigger bulk step is written in a worker thread

T = TypeVar("T")


@dataclass(frozen=True)
class ReviewKey:
    """A key the face grids answer. The controller's `review_keys` is the one table: its key
    filter dispatches by it, and the Label menu and the help card show it."""

    keys_shown: tuple[str, ...]  # as the help and the menus show it ("Backspace", "Delete")
    menu_text: str  # the Review ▸ Label entry
    help: str
    act: Callable[[], object]
    texts: tuple[str, ...] = ()  # matched by the character typed (the class keys of classes.json)
    keys: tuple[Qt.Key, ...] = ()  # matched by the key code

    @property
    def shown(self) -> str:
        return " / ".join(self.keys_shown)

    def matches(self, event: QKeyEvent) -> bool:
        return event.text() in self.texts or event.key() in self.keys


def annotator_name(settings: QSettings) -> str:
    """The stored name if core.labeling would record it, else the OS user's."""
    stored = settings.value(KEY_ANNOTATOR)
    try:
        return labeling.check_annotator(str(stored) if stored is not None else None)
    except LabelingError:
        return labeling.default_annotator()


class LabelingController(QObject):
    """Routes the annotator's keys and menu choices to core.labeling for the active grid."""

    message = Signal(str)  # for the status bar
    # FaceRow or None, QueueItem or None, queue size or None, why an unranked face is in the queue or None
    face_shown = Signal(object, object, object, object)
    upcoming = Signal(object)  # the next faces (FaceRows), to load their large images early
    annotator_changed = Signal(str)

    def __init__(self, state: ProjectState, dialogs, settings: QSettings, parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.dialogs = dialogs
        self.settings = settings
        self.annotator = annotator_name(settings)
        self.grids: list[FaceGrid] = []
        self.active_grid: FaceGrid | None = None
        self.queue_model = None  # the review queue's model: rank and reason of queued faces
        self.classes = {cls.key: cls.name for cls in expression_classes()}
        self.review_keys = self._review_keys()
        self.undo_action = self._action(
            "&Undo labeling", self.undo, *UNDO_KEYS, tip="undo your last step, even after a restart"
        )
        self.redo_action = self._action("&Redo labeling", self.redo, *REDO_KEYS, tip="redo the step you undid")
        self.bulk_job: BackgroundJob | None = None  # a big bulk step being written
        state.project_changed.connect(self.refresh_undo_state)
        self.refresh_undo_state()

    def _review_keys(self) -> list[ReviewKey]:
        return [
            *[
                ReviewKey((key,), name, f"label as {name}, then next face", partial(self.label, name), texts=(key,))
                for key, name in self.classes.items()
            ],
            ReviewKey(
                ("Enter",),
                "Accept the suggestion",
                "accept the run's suggestion, then next face",
                self.accept_suggestion,
                keys=(Qt.Key.Key_Return, Qt.Key.Key_Enter),
            ),
            ReviewKey(("Space",), "Skip", "skip to the next face", self.advance, keys=(Qt.Key.Key_Space,)),
            ReviewKey(
                ("Backspace", "Delete"),
                "Clear the label",
                "clear the label",
                self.clear,
                keys=(Qt.Key.Key_Backspace, Qt.Key.Key_Delete),
            ),
        ]

    def _key_of(self, act: Callable[[], object]) -> str:
        """The first key of the review key that does `act`, as a menu shows it."""
        return next(key.keys_shown[0] for key in self.review_keys if key.act == act)

    def key_rows(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every key of the face grids: this controller's and the grid's own."""
        return [(key.shown, key.help) for key in self.review_keys] + list(GRID_OWN_KEYS)

    def _action(self, text: str, slot, *shortcuts, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setShortcuts([QKeySequence(s) for s in shortcuts])
        action.setStatusTip(tip)  # the help card's text for its keys
        action.triggered.connect(slot)
        return action

    # -- set-up --------------------------------------------------------------------------------
    def add_grid(self, grid: FaceGrid, queue_model=None) -> None:
        self.grids.append(grid)
        if queue_model is not None:
            self.queue_model = queue_model
        grid.installEventFilter(self)
        grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        grid.customContextMenuRequested.connect(lambda pos, g=grid: self._context_menu(g, pos))
        grid.current_face_changed.connect(lambda _face, g=grid: self._current_changed(g))
        grid.model().modelReset.connect(lambda g=grid: self._current_changed(g))
        if self.active_grid is None:
            self.active_grid = grid

    def set_active_grid(self, grid: FaceGrid) -> None:
        self.active_grid = grid
        self.show_current()

    def set_annotator(self, name: str) -> bool:
        """Change the name corrections are recorded under (kept in the settings); a name
        core.labeling.check_annotator refuses is said in the status bar and changes nothing."""
        try:
            name = labeling.check_annotator(name)
        except LabelingError as exc:
            problem = str(exc)
            self.message.emit(f"{problem[:1].upper()}{problem[1:]}; still labeling as {self.annotator}.")
            return False
        if name != self.annotator:
            self.annotator = name
            self.settings.setValue(KEY_ANNOTATOR, name)
            self.settings.sync()
            self.annotator_changed.emit(name)
            self.refresh_undo_state()
            self.message.emit(f"Labeling as {name}. Undo takes back {name}'s steps.")
        return True

    # -- what is current -----------------------------------------------------------------------
    def show_current(self) -> None:
        if self.active_grid is not None:
            self._current_changed(self.active_grid)

    def _current_changed(self, grid: FaceGrid) -> None:
        if grid is not self.active_grid:
            return
        face = grid.current_face()
        item = self.queue_model.item_for(face.id) if face is not None and self.queue_model is not None else None
        size = self.queue_model.queue_size() if item is not None else None
        note = (
            self.queue_model.note_for(face.id)
            if face is not None and item is None and self.queue_model is not None and grid.model() is self.queue_model
            else None
        )
        self.face_shown.emit(face, item, size, note)
        if face is not None:
            row = grid.currentIndex().row()
            model = grid.face_model()
            self.upcoming.emit([model.face(r) for r in range(row + 1, min(row + 3, model.rowCount()))])

    def target_ids(self, grid: FaceGrid | None = None) -> list[int]:
        """The selected faces, or the current face when nothing is selected."""
        grid = grid or self.active_grid
        if grid is None:
            return []
        selected = grid.selected_ids()
        if selected:
            return selected
        face = grid.current_face()
        return [face.id] if face is not None else []

    # -- keys ------------------------------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)  # PySide hands a key press over as its QKeyEvent
            and isinstance(watched, FaceGrid)
            and watched in self.grids
        ):
            return self._key(watched, event)
        return False

    def _key(self, grid: FaceGrid, event: QKeyEvent) -> bool:
        if event.modifiers() & (
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier
        ):
            return False  # shortcuts (Ctrl+Z, Ctrl+A ...) and the grid's own keys
        self.active_grid = grid
        review_key = next((key for key in self.review_keys if key.matches(event)), None)
        if review_key is None:
            return False
        review_key.act()
        return True

    # -- actions -----------------------------------------------------------------------------------
    # `scope`: which faces of a selection to include; None asks (or takes the safe scope).
    def label(self, label: str, scope: BulkScope | None = None) -> LabelStep | None:
        """Label the selected faces (one step), or the current face and move to the next; in the
        adjudication queue, adjudicate the current face."""
        if self.adjudicating():
            return self._adjudicate(lambda _face: label)
        run = self.state.current_run
        return self._change_targets(
            lambda api, face: api.labeling.set_label(
                face, label, self.annotator, suggestion=self._suggestion(face), run_id=run
            ),
            lambda api, faces, chosen: api.labeling.bulk_label(
                faces, label, self.annotator, run_id=run, **chosen.flags()
            ),
            BulkAction.label(label),
            advance=True,
            scope=scope,
        )

    def accept_suggestion(self, scope: BulkScope | None = None) -> LabelStep | None:
        """Take the run's pseudo-label as the label (several faces: each its own, one step)."""
        if self.adjudicating():
            return self._adjudicate(self._suggestion)
        run = self.state.current_run
        return self._change_targets(
            lambda api, face: api.labeling.accept_suggestion(face, self.annotator, run),
            lambda api, faces, chosen: api.labeling.accept_suggestions(faces, self.annotator, run, **chosen.flags()),
            BulkAction.accept(),
            advance=True,
            scope=scope,
        )

    def clear(self, scope: BulkScope | None = None) -> LabelStep | None:
        """Make the selected faces (one step), or the current face, unlabeled; no moving on."""
        if self.adjudicating():
            self.message.emit(
                "An adjudication gives the face a class: press 1–7 (Ctrl+Z takes back your last adjudication)."
            )
            return None
        return self._change_targets(
            lambda api, face: api.labeling.clear_label(face, self.annotator),
            lambda api, faces, chosen: api.labeling.clear_labels(
                faces, self.annotator, include_val_test=chosen.include_val_test
            ),
            BulkAction.clear(),
            advance=False,
            scope=scope,
        )

    def adjudicating(self) -> bool:
        """The keys act on the adjudication queue: a label is the adjudicator's final word."""
        grid, queue = self.active_grid, self.queue_model
        return grid is not None and queue is not None and grid.model() is queue and bool(queue.adjudicating)

    def _adjudicate(self, label_of: Callable[[int], str | None]) -> LabelStep | None:
        """The current face's final label, `label_of(face)`, over its votes; then the next face."""
        if self.saving():
            return None
        ids = self.target_ids()
        if len(ids) != 1:
            self.message.emit(
                "Select a face first."
                if not ids
                else "Adjudicate one face at a time: select a single face of the queue (its votes are beside it)."
            )
            return None
        face = ids[0]
        label = label_of(face)
        if label is None:
            self.message.emit(f"No suggestion for face {face} in this run: press 1–7 to adjudicate it.")
            return None
        run = self.state.current_run
        change = self._run(
            lambda api: api.labeling.set_label(
                face, label, self.annotator, suggestion=self._suggestion(face), run_id=run, adjudicate=True
            )
        )
        if change is False:
            return None
        self._changed(change)
        self.advance()
        if change.step is None:
            self.message.emit(f"Face {face} already has your adjudication: {label}.")
        else:
            self.message.emit(
                f"Adjudicated by {self.annotator}: {change.step.describe()} — the final word over the votes. "
                "Ctrl+Z takes it back."
            )
        return change.step

    def _change_targets(
        self,
        one: Callable[[StudioApi, int], Change],
        many: Callable[[StudioApi, list[int], BulkScope], Change],
        action: BulkAction,
        advance: bool,
        scope: BulkScope | None,
    ) -> LabelStep | None:
        """`one(api, face)` on the current face, or `many(api, faces, scope)` on a selection of several;
        each returns a Change. The step, or None (nothing changed, or the change runs in the background)."""
        if self.saving():
            return None
        ids = self.target_ids()
        if not ids:
            self.message.emit("Select a face first.")
            return None
        if len(ids) > 1:
            return self._bulk(ids, many, action, scope)
        change = self._run(lambda api: one(api, ids[0]))
        if change is False:
            return None
        self._changed(change)
        if advance:
            self.advance()
        return change.step

    def _bulk(
        self,
        ids: list[int],
        many: Callable[[StudioApi, list[int], BulkScope], Change],
        action: BulkAction,
        scope: BulkScope | None,
    ) -> LabelStep | None:
        """One step on several faces, in the scope given or asked for (see app/bulk_scope.py)."""
        if scope is None:
            summary = self._run(lambda api: api.labeling.selection_summary(ids))
            if summary is False:
                return None
            scope = ask_scope(self.dialogs, action, summary)
            if scope is None:
                self.message.emit("Nothing changed.")
                return None
        if len(ids) > BACKGROUND_BULK_OVER:
            self._bulk_in_background(ids, lambda api: many(api, ids, scope), action.done)
            return None
        change = self._run(lambda api: many(api, ids, scope))
        self._announce_bulk(change, ids, action.done)
        return change.step if change is not False else None

    def _bulk_in_background(self, ids: list[int], write: Callable[[StudioApi], Change], what: str) -> None:
        """A big bulk step in a worker thread; the keys wait (saving()) until it is written."""
        project, api = self.state.project, self.state.api
        if api is None:
            self.message.emit("Open a project first.")
            return
        self.bulk_job = job = BackgroundJob(lambda _progress: write(api), self)
        job.succeeded.connect(lambda change: self._bulk_written(project, change, ids, what))
        job.failed.connect(lambda exc: self._bulk_failed(project, exc))
        job.done.connect(self._bulk_done)
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        self.message.emit(f"Saving the step on {len(ids):,} faces…")
        job.start()

    def _bulk_written(self, project, change: Change, ids: list[int], what: str) -> None:
        if project is self.state.project:
            self._announce_bulk(change, ids, what)

    def _bulk_failed(self, project, exc: BaseException) -> None:
        if project is self.state.project:
            self._report_failure(exc)
            self.refresh_undo_state()

    def _bulk_done(self) -> None:
        job, self.bulk_job = self.bulk_job, None
        if job is not None:
            job.deleteLater()

    def saving(self) -> bool:
        """True (and said) while a big bulk step is being written: changes wait for it."""
        if self.bulk_job is None:
            return False
        self.message.emit("Still saving the last bulk step; try again in a moment.")
        return True

    def wait(self) -> None:
        """Block until a bulk step being written is saved (closing the window)."""
        if self.bulk_job is not None:
            self.bulk_job.wait()

    def advance(self) -> None:
        """Move to the next face of the active grid (Space, and after a label)."""
        grid = self.active_grid
        if grid is None or grid.model().rowCount() == 0:
            return
        model, row = grid.model(), grid.currentIndex().row() + 1
        if model is self.queue_model:  # pass by the faces teammates settled meanwhile
            while row < model.rowCount() and model.face(row).id in model.settled:
                row += 1
        if row < model.rowCount():
            grid.select_row(row)
        elif grid.model() is self.queue_model:
            self.message.emit("That was the last face of the queue: press F5 for the next ones.")
        else:
            self.message.emit("That was the last face in the grid.")

    def undo(self) -> None:
        self._undo_or_redo("undo", "Undone", "Nothing to undo")

    def redo(self) -> None:
        self._undo_or_redo("redo", "Redone", "Nothing to redo")

    def _undo_or_redo(self, which: str, done: str, nothing: str) -> None:
        if self.state.project is None or self.saving():
            return
        change = self._run(lambda api: getattr(api.labeling, which)(self.annotator))
        if change is False:
            return
        self._changed(change)
        if change.step is None:
            self.message.emit(f"{nothing} for {self.annotator}.")
            return
        self._reveal(list(change.touched))
        what = f"{done} adjudication" if change.adjudicated else done
        self.message.emit(f"{what}: {change.step.describe()}")

    def refresh_undo_state(self) -> None:
        """Undo/Redo enabled as the corrections log says for this annotator (a project opened,
        another annotator); after a change, its Change says it."""
        if self.state.project is None:
            self._set_undo_state(False, False)
            return
        state = self._run(lambda api: api.labeling.undo_state(self.annotator))
        if state is not False:
            self._set_undo_state(state.can_undo, state.can_redo)

    def _set_undo_state(self, can_undo: bool, can_redo: bool) -> None:
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        name = self.annotator
        self.undo_action.setToolTip(f"undo {name}'s last labeling step" if can_undo else f"nothing of {name}'s to undo")
        self.redo_action.setToolTip(f"redo {name}'s last undone step" if can_redo else f"nothing of {name}'s to redo")

    # -- helpers -----------------------------------------------------------------------------------
    def _suggestion(self, face_id: int) -> str | None:
        """What the run proposed for the face, recorded with the correction."""
        item = self.queue_model.item_for(face_id) if self.queue_model is not None else None
        if item is not None and item.run_id == self.state.current_run:
            return item.pseudo_label
        if self.state.current_run is None or self.state.api is None:
            return None
        suggestion = self.state.api.labeling.suggestion_for(face_id, self.state.current_run)
        return suggestion.label if suggestion else None

    def _run(self, change: Callable[[StudioApi], T]) -> T | Literal[False]:
        """Do one change on the open project's API; say why when it cannot be done. False: it failed
        (already reported)."""
        api = self.state.api
        if api is None:  # no project
            self.message.emit("Open a project first.")
            return False
        try:
            return change(api)
        except (LabelingError, SQLAlchemyError, OSError) as exc:
            self._report_failure(exc)
        return False

    def _report_failure(self, exc: BaseException) -> None:
        if isinstance(exc, LabelingError):
            self.message.emit(f"Not changed: {exc}")
            return
        if not isinstance(exc, (SQLAlchemyError, OSError)):
            raise exc  # a bug: the studio's error hook shows it
        problem = explain_storage_error(exc, self.state.root)  # e.g. a database locked by another writer
        text = problem.message if problem else f"the project could not be written: {exc}"
        self.dialogs.error("Label not saved", text[:1].upper() + text[1:] + ".")

    def _changed(self, change: Change) -> None:
        """Views re-read the faces the change touched; Undo/Redo follow what it says."""
        if change.touched:
            self.state.notify_labels_changed(change.face_ids)
        self._set_undo_state(change.can_undo, change.can_redo)

    def _announce_bulk(self, change, ids: list[int], what: str) -> None:
        if change is False:
            return
        self._changed(change)
        step = change.step
        changed = len(change.face_ids)
        left_out = step.left_out if step else labeling.LeftOut()
        same = len(ids) - changed - len(left_out.labeled) - len(left_out.val_test)
        self.message.emit(
            f"{changed:,} face{'s' if changed != 1 else ''} {what}"
            + (f" ({same:,} already were)" if same else "")
            + (" — one step: Ctrl+Z takes it back." if changed else ".")
            + (
                f" Left out: {left_out.describe()} (right-click › {INCLUDE_MENU} to change them too)."
                if left_out
                else ""
            )
        )

    def _reveal(self, face_ids: list[int]) -> None:
        """Make the first of these faces current in the active grid, if it is there."""
        grid = self.active_grid
        if grid is None:
            return
        for face_id in face_ids:
            row = grid.face_model().row_of(face_id)
            if row is not None:
                grid.select_row(row)
                return

    def add_label_actions(self, menu: QMenu) -> None:
        """The review keys as menu entries (the key shown beside each; it works in the grids)."""
        for i, key in enumerate(self.review_keys):
            if i == len(self.classes):
                menu.addSeparator()  # the labels, then the other steps
            menu.addAction(f"{key.menu_text}\t{key.keys_shown[0]}").triggered.connect(
                lambda _=False, act=key.act: act()
            )

    def _context_menu(self, grid: FaceGrid, pos: QPoint) -> None:
        self.active_grid = grid
        menu = self.build_context_menu(grid)
        if menu is not None:
            menu.exec(grid.viewport().mapToGlobal(pos))

    def build_context_menu(self, grid: FaceGrid) -> QMenu | None:
        ids = self.target_ids(grid)
        if not ids:
            return None
        count = f"{len(ids):,} faces" if len(ids) > 1 else "this face"
        menu = QMenu(grid)
        label_menu = menu.addMenu(f"Adjudicate {count} as" if self.adjudicating() else f"Label {count} as")
        for key, name in self.classes.items():
            label_menu.addAction(f"{name}\t{key}").triggered.connect(lambda _=False, n=name: self.label(n))
        menu.addAction(f"Accept the suggestion for {count}\t{self._key_of(self.accept_suggestion)}").triggered.connect(
            lambda: self.accept_suggestion()
        )
        menu.addAction(f"Clear the label of {count}\t{self._key_of(self.clear)}").triggered.connect(
            lambda: self.clear()
        )
        if len(ids) > 1:
            self._add_include_menu(menu, ids)
        menu.addSeparator()
        menu.addAction("Select all\tCtrl+A").triggered.connect(grid.selectAll)
        return menu

    def _add_include_menu(self, menu: QMenu, ids: list[int]) -> None:
        """The bulk steps with the selection's labeled and val/test faces included, when it has any
        (the keys leave them out)."""
        summary = self._run(lambda api: api.labeling.selection_summary(ids))
        if summary is False or not (summary.labeled or summary.val_test):
            return
        menu.addSeparator()
        include = menu.addMenu(f"{INCLUDE_MENU} ({summary.labeled:,} labeled, {summary.val_test:,} in val/test)")
        for name in self.classes.values():
            include.addAction(f"Label all {len(ids):,} as {name}").triggered.connect(
                lambda _=False, n=name: self.label(n, EVERYTHING)
            )
        include.addSeparator()
        include.addAction(f"Accept the suggestion for all {len(ids):,}").triggered.connect(
            lambda: self.accept_suggestion(EVERYTHING)
        )
        include.addAction(f"Clear the labels of all {len(ids):,}").triggered.connect(lambda: self.clear(EVERYTHING))
