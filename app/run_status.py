"""The training panel's run status: one plain line saying what runs or ran and how it ended
("Run 14 finished: SIT-FER on the offline encoder, 600 steps, val accuracy 81%"), and on demand
the technical record behind it: the worker's own words (the encoder's weights file and its
sha256, every final metric to three places, warnings, a traceback), in the line's tooltip and in
the popup of its Details button, selectable for a bug report.

The record follows the worker's events (`record`, connected to WorkerProcess.event); the panel
says the line (`set_status`). Both start again with each launch (`begin`).
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.ssl.spec import ALGORITHM_SPECS
from core.training.events import END_EVENTS, Event

STATE_COLORS = {
    "idle": "#a3abb8",
    "running": "#6ea8fe",
    "finished": "#7bd88f",
    "cancelled": "#f2c14e",
    "failed": "#ff6b6b",
}
DETAILS_LINES = 9  # the details popup's height; longer records scroll in it
RECORDED_EVENTS = (Event.STARTED, Event.WARNING, Event.INFO, *END_EVENTS)  # the technical record


def run_phrase(algorithm: str, encoder: str, mode: str, steps: str) -> str:
    """What a run does, as a user says it: "SIT-FER on the offline encoder, 600 steps"
    (fine-tuning the encoder in fine-tune mode)."""
    spec = ALGORITHM_SPECS.get(algorithm)
    title = spec.title if spec is not None else algorithm
    on = "fine-tuning" if mode == "finetune" else "on"
    return f"{title} {on} the {encoder} encoder" + (f", {steps}" if steps else "")


def accuracy_phrase(metrics: dict) -> str:
    """The validation accuracy of the run's suggestions (the fused prediction the map and the
    review queue show; the classifier's alone where a run has no fused one), as a percentage."""
    for key in ("val_fused_accuracy", "val_accuracy"):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            return f"val accuracy {value:.0%}"
    return ""


def error_phrase(error: str) -> str:
    """An error in one line: its first line, and a traceback's last (the exception itself)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return "no reason given"
    if len(lines) > 1 and any(line.startswith("Traceback") for line in lines):
        return f"{lines[0]}: {lines[-1]}"
    return lines[0]


class RunStatus(QWidget):
    """The line, and beside it a Details button (shown where there is a record) that opens the
    record in a popup below the line: it covers the curves for a moment rather than pushing the
    panel's layout about (the panel sits at its minimum height in a small window)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.line = QLabel()
        self.line.setObjectName("runStatus")
        self.line.setWordWrap(True)
        self.line.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.line.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        self.toggle = QToolButton()
        self.toggle.setObjectName("runDetailsToggle")
        self.toggle.setText("Details")
        self.toggle.setArrowType(Qt.ArrowType.DownArrow)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("the run's technical details: encoder weights, every metric, the worker's messages")
        self.toggle.clicked.connect(self.show_details)
        self.popup = QFrame(self, Qt.WindowType.Popup)  # closes on a click or Esc anywhere else
        self.popup.setObjectName("runDetailsPopup")
        self.popup.setFrameShape(QFrame.Shape.StyledPanel)
        self.details = QPlainTextEdit()
        self.details.setObjectName("runDetails")
        self.details.setReadOnly(True)  # selectable and copyable, not editable
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        inside = QVBoxLayout(self.popup)
        inside.setContentsMargins(2, 2, 2, 2)
        inside.addWidget(self.details)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.line, 1)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignTop)
        self._record: list[str] = []
        self._extra = ""
        self.phrase = ""  # the launched run's run_phrase, once it has started
        self._show_details()

    def text(self) -> str:
        return self.line.text()

    def details_text(self) -> str:
        return self.details.toPlainText()

    def begin(self) -> None:
        """A new launch: no record yet."""
        self._record, self._extra, self.phrase = [], "", ""
        self._show_details()

    def record(self, event: dict) -> None:
        """One worker event: its message (or error) joins the record; "started" also says what
        the run does, for the line."""
        kind = event.get("event")
        if kind not in RECORDED_EVENTS:
            return
        if kind == Event.STARTED:
            steps = f"{event['steps']:,} steps" if isinstance(event.get("steps"), int) else ""
            self.phrase = run_phrase(
                str(event.get("algorithm")), str(event.get("encoder")), str(event.get("mode")), steps
            )
        text = str(event.get("message") or event.get("error") or "").strip()
        if text:
            self._record.append(f"warning: {text}" if kind == Event.WARNING else text)
            self._show_details()

    def set_status(self, state: str, text: str, details: str = "") -> None:
        """The line in its state's colour; `details` (an error, a command) is added to the record."""
        self.line.setProperty("runState", state)
        weight = 400 if state == "idle" else 600
        self.line.setStyleSheet(f"color: {STATE_COLORS[state]}; font-weight: {weight};")
        self.line.setText(text)
        self._extra = details.strip()
        self._show_details()

    def _show_details(self) -> None:
        lines = list(self._record)
        if self._extra and self._extra not in lines:
            lines.append(self._extra)
        text = "\n".join(lines)
        self.details.setPlainText(text)
        self.line.setToolTip(text)
        self.toggle.setVisible(bool(text))
        if not text:
            self.popup.hide()

    def show_details(self) -> None:
        """The record in its popup, as wide as the line and below it (above it near the
        screen's bottom)."""
        height = DETAILS_LINES * self.details.fontMetrics().lineSpacing() + 16
        width = max(self.width(), 320)
        below = self.mapToGlobal(QPoint(0, self.height() + 2))
        screen = self.screen().availableGeometry()
        if below.y() + height > screen.bottom():
            below = self.mapToGlobal(QPoint(0, -height - 2))
        self.popup.setGeometry(QRect(below, QSize(width, height)))
        self.popup.show()
        self.details.setFocus()
