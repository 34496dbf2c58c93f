"""File ▸ Export model…: a finished run as a model file with its model card, for use elsewhere.

The dialog picks the run (the current one first, among the project's finished runs), the format
(ONNX, or TorchScript) and an output folder, then runs `main.py export-model PROJECT OUT_DIR --run R
--format F --events json` in its own process (through `WorkerProcess`: the studio never loads
torch) with a busy bar. When it has finished it names the files written (the model,
model_card.json, MODEL_CARD.md), offers to open the folder, and shows MODEL_CARD.md. A folder
that already holds a model is only written over after the user said so (`--force`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QTextCharFormat, QTextCursor, QTextFormat
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app import settings as studio
from app.project_state import ProjectState
from app.run_history import format_duration
from app.worker_process import REPO_ROOT, WorkerOutcome, WorkerProcess
from core.run_data import RunSummary
from core.ssl.spec import ALGORITHM_SPECS
from core.store.models import RUN_FINISHED
from core.training.events import Event

FORMATS = (("onnx", "ONNX (onnxruntime, most runtimes)"), ("torchscript", "TorchScript (PyTorch without this code)"))
# What a folder's exported model is made of: what core.deploy.export refuses to write over without --force.
MODEL_FILES = ("model.onnx", "model.torchscript.pt", "model_card.json", "MODEL_CARD.md")
KEY_EXPORT_FOLDER = "folders/export"
PROBLEM_COLOR = "#ff6b6b"


def export_command(
    project_root: str | Path, out_dir: str | Path, run_id: int | None, fmt: str, force: bool = False
) -> tuple[str, list[str]]:
    args = [str(REPO_ROOT / "main.py"), "export-model", str(project_root), str(out_dir), "--format", fmt]
    if run_id is not None:
        args += ["--run", str(run_id)]
    if force:
        args.append("--force")
    return sys.executable, [*args, "--events", "json"]


def holds_model(folder: str | Path) -> bool:
    """Whether `folder` has a model the export would write over."""
    path = Path(folder)
    return path.is_dir() and any((path / name).exists() for name in MODEL_FILES)


def run_title(run: RunSummary) -> str:
    spec = ALGORITHM_SPECS.get(run.algorithm)
    accuracy = run.val_fused_accuracy if run.val_fused_accuracy is not None else run.val_accuracy
    parts = [f"Run {run.id}", spec.title if spec is not None else run.algorithm, run.encoder, run.mode]
    if accuracy is not None:
        parts.append(f"val {accuracy:.0%}")
    return " · ".join(parts)


HEADING_PX = {1: 19, 2: 15, 3: 13}  # Markdown's headings at Qt's default sizes dwarf a dialog's text


def calm_headings(browser: QTextBrowser) -> None:
    """Smaller headings for a Markdown document shown in `browser` (bold, a little larger than the text)."""
    cursor = QTextCursor(browser.document())
    block = browser.document().begin()
    while block.isValid():
        level = block.blockFormat().headingLevel()
        if level:
            cursor.setPosition(block.position())
            cursor.setPosition(block.position() + block.length() - 1, QTextCursor.MoveMode.KeepAnchor)
            char = QTextCharFormat()
            char.setProperty(QTextFormat.Property.FontSizeAdjustment, 0)  # Markdown's own heading sizes off
            font = char.font()
            font.setPixelSize(HEADING_PX.get(level, 13))
            font.setBold(True)
            char.setFont(font)
            cursor.mergeCharFormat(char)
            spaced = block.blockFormat()
            spaced.setTopMargin(10 if level > 1 else 0)
            spaced.setBottomMargin(4)
            cursor.setBlockFormat(spaced)
        block = block.next()


class ExportModelDialog(QDialog):
    def __init__(self, state: ProjectState, dialogs, settings=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export model")
        self.setObjectName("exportModelDialog")
        self.state = state
        self.dialogs = dialogs
        self.settings = settings
        self.result_event: dict | None = None  # the worker's finished event
        self.error = ""
        self.worker = WorkerProcess(self)
        self.worker.event.connect(self._event)
        self.worker.ended.connect(self._ended)

        self.run_box = QComboBox()
        runs = [run for run in state.runs() if run.status == RUN_FINISHED]
        for run in runs:
            self.run_box.addItem(run_title(run), run.id)
        current = self.run_box.findData(state.current_run)
        self.run_box.setCurrentIndex(max(current, 0))
        self.format_box = QComboBox()
        for name, title in FORMATS:
            self.format_box.addItem(title, name)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("a folder for the model and its card")
        self._suggestion = self._suggested_folder()
        self.folder_edit.setText(self._suggestion)
        self.choose_button = QPushButton("Choose…")
        self.choose_button.clicked.connect(self.choose_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.choose_button)
        form = QFormLayout()
        form.addRow("Run", self.run_box)
        form.addRow("Format", self.format_box)
        form.addRow("Folder", folder_row)

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open folder")
        self.open_button.setToolTip("show the exported files in the file manager")
        self.open_button.setVisible(False)
        self.open_button.clicked.connect(self.open_folder)
        self.card = QTextBrowser()
        self.card.setObjectName("modelCard")
        self.card.setOpenExternalLinks(True)
        self.card.setVisible(False)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.export)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        if not runs:
            layout.addWidget(QLabel("This project has no finished run yet: train a model first."))
        layout.addLayout(form)
        layout.addWidget(self.progress)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.open_button)
        layout.addLayout(status_row)
        layout.addWidget(self.card, 1)
        layout.addWidget(self.buttons)
        self.folder_edit.textChanged.connect(self._update)
        self.run_box.currentIndexChanged.connect(self._suggest_again)
        self.format_box.currentIndexChanged.connect(self._update)
        self.setMinimumWidth(560)
        self._update()

    # -- choices -----------------------------------------------------------------------------
    def run_id(self) -> int | None:
        data = self.run_box.currentData()
        return int(data) if data is not None else None

    def format(self) -> str:
        return str(self.format_box.currentData())

    def folder(self) -> str:
        return self.folder_edit.text().strip()

    def set_values(self, run_id: int | None = None, fmt: str | None = None, folder: str | Path | None = None) -> None:
        if run_id is not None:
            self.run_box.setCurrentIndex(self.run_box.findData(run_id))
        if fmt is not None:
            self.format_box.setCurrentIndex(self.format_box.findData(fmt))
        if folder is not None:
            self.folder_edit.setText(str(folder))

    def _suggested_folder(self) -> str:
        """Beside the last export (else the home folder), named after the project and the run."""
        run_id, root = self.run_id(), self.state.root
        if run_id is None or root is None:
            return ""
        start = studio.start_folder(self.settings, KEY_EXPORT_FOLDER) if self.settings is not None else str(Path.home())
        return str(Path(start) / f"{root.name}-run{run_id}-model")

    def _suggest_again(self) -> None:
        """Another run: a suggested folder follows it; one the user typed or chose stays."""
        if self.folder_edit.text() == self._suggestion:
            self._suggestion = self._suggested_folder()
            self.folder_edit.setText(self._suggestion)
        self._update()

    def choose_folder(self) -> None:
        start = str(Path(self.folder()).parent) if self.folder() else str(Path.home())
        path = self.dialogs.choose_folder("Export the model into this folder", start)
        if path:
            self.folder_edit.setText(path)

    # -- exporting ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker.running

    def export(self) -> bool:
        """Start the export; False when it cannot start (said in the dialog or a message)."""
        if self.running:
            return False
        folder, run_id, root = self.folder(), self.run_id(), self.state.root
        if root is None or run_id is None or not folder:
            return False
        force = False
        if holds_model(folder):
            if not self.dialogs.confirm(
                "Replace the model?",
                f"{folder} already holds an exported model. Write this one over it?",
            ):
                return False
            force = True
        if self.settings is not None:
            studio.remember_folder(self.settings, KEY_EXPORT_FOLDER, folder)
        self.result_event, self.error = None, ""
        self.card.clear()
        self.card.setVisible(False)
        self.open_button.setVisible(False)
        self._set_status(f"Exporting run {run_id} as {self.format_box.currentText().split(' (')[0]}…")
        self.worker.start(*export_command(root, folder, run_id, self.format(), force))
        self._update()
        return True

    def _event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == Event.PROGRESS and event.get("total"):
            self.progress.setRange(0, int(event["total"]))
            self.progress.setValue(int(event.get("step") or 0))
        elif kind in (Event.PHASE, Event.INFO) and event.get("message"):
            self._set_status(str(event["message"]))
        elif kind == Event.PHASE and event.get("phase"):
            self._set_status(f"Exporting: {event['phase']}…")

    def _ended(self, outcome: WorkerOutcome) -> None:
        end = self.worker.end_event or {}
        if outcome.status == Event.FINISHED:
            self.result_event = end
            self._show_result(end)
        else:
            self.error = str(end.get("message") or outcome.error or "the export stopped without saying why")
            self._set_status(f"The export failed: {self.error}", problem=True)
            self.dialogs.error("Export failed", self.error)
        self._update()

    def _show_result(self, end: dict) -> None:
        out_dir = Path(str(end.get("out_dir") or self.folder()))
        names = [Path(str(end[k])).name for k in ("model", "card", "card_md") if end.get(k)]
        seconds = end.get("seconds")
        took = f" in {format_duration(float(seconds))}" if seconds else ""
        self._set_status(f"Exported{took} to {out_dir}: " + ", ".join(names))
        self.status.setToolTip(str(end.get("message") or ""))
        self.open_button.setVisible(True)
        card_md = Path(str(end["card_md"])) if end.get("card_md") else out_dir / "MODEL_CARD.md"
        try:
            text = card_md.read_text(encoding="utf-8")
        except OSError as exc:
            text = f"*Cannot read {card_md}: {exc.strerror or exc}*"
        self.card.setMarkdown(text)
        calm_headings(self.card)
        self.card.setVisible(True)
        self.resize(max(self.width(), 720), max(self.height(), 620))

    def out_dir(self) -> Path | None:
        if self.result_event is None:
            return None
        return Path(str(self.result_event.get("out_dir") or self.folder()))

    def open_folder(self) -> bool:
        folder = self.out_dir()
        return folder is not None and QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _set_status(self, text: str, problem: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {PROBLEM_COLOR};" if problem else "")

    def _update(self) -> None:
        running = self.running
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, 0)
        for widget in (self.run_box, self.format_box, self.folder_edit, self.choose_button):
            widget.setEnabled(not running)
        can = not running and self.run_id() is not None and bool(self.folder()) and self.state.root is not None
        self.export_button.setEnabled(can)
        self.export_button.setToolTip(
            ""
            if can or running
            else "Choose a folder for the model first"
            if self.run_id() is not None
            else "Train a model first: only a finished run can be exported"
        )

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        if self.worker.running:
            self.worker.cancel(kill_after_ms=timeout_ms)
            if not self.worker.wait(timeout_ms):
                self.worker._kill()
                self.worker.wait(2_000)

    def reject(self) -> None:
        """Close: an export still running is stopped first."""
        if self.running:
            self.shutdown()
        super().reject()
