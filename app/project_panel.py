"""The left panel: what the project holds (counts per split and label) and the grid's filters."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.project_state import FaceFilter, ProjectState
from app.widgets import ElidedLabel, dot_icon
from core.classes import expression_classes
from core.store.models import SPLITS

STATUS_CHOICES = (("All", None), ("Labeled", True), ("Unlabeled", False))


def _section(title: str) -> QLabel:
    label = QLabel(title.upper())
    label.setObjectName("sectionTitle")
    return label


def _swatch(color: str) -> QLabel:
    swatch = QLabel()
    swatch.setFixedSize(10, 10)
    swatch.setStyleSheet(f"background: {color}; border-radius: 5px;")
    return swatch


def _number(text: str = "0") -> QLabel:
    label = QLabel(text)
    label.setObjectName("count")
    label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return label


class ProjectPanel(QScrollArea):
    filter_changed = Signal(object)  # FaceFilter

    def __init__(self, state: ProjectState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.setObjectName("projectPanel")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("projectPanelBody")
        layout = QVBoxLayout(body)
        layout.setContentsMargins(14, 14, 14, 14)
        layout.setSpacing(8)

        self.name_label = ElidedLabel("No project", Qt.TextElideMode.ElideRight)
        self.name_label.setObjectName("projectName")
        self.path_label = ElidedLabel("")
        self.path_label.setObjectName("projectPath")
        layout.addWidget(self.name_label)
        layout.addWidget(self.path_label)

        layout.addWidget(_section("Faces"))
        totals = QGridLayout()
        self.total_labels: dict[str, QLabel] = {}
        for row, (key, text) in enumerate(
            (
                ("images", "Faces"),
                ("labeled", "Labeled"),
                ("unlabeled", "Unlabeled"),
                ("hidden_truth", "Hidden ground truth"),
            )
        ):
            totals.addWidget(QLabel(text), row, 0)
            self.total_labels[key] = _number()
            totals.addWidget(self.total_labels[key], row, 1)
        totals.setColumnStretch(0, 1)
        layout.addLayout(totals)

        layout.addWidget(_section("Splits"))
        splits = QGridLayout()
        for column, text in enumerate(("", "faces", "labeled", "unlabeled")):
            header = QLabel(text)
            header.setObjectName("columnHeader")
            header.setAlignment(Qt.AlignmentFlag.AlignRight)
            splits.addWidget(header, 0, column)
        self.split_labels: dict[tuple[str, str], QLabel] = {}
        for row, split in enumerate(SPLITS, start=1):
            splits.addWidget(QLabel(split), row, 0)
            for column, key in enumerate(("images", "labeled", "unlabeled"), start=1):
                self.split_labels[(split, key)] = _number()
                splits.addWidget(self.split_labels[(split, key)], row, column)
        splits.setColumnStretch(0, 1)
        layout.addLayout(splits)

        layout.addWidget(_section("Labels"))
        labels = QGridLayout()
        labels.setHorizontalSpacing(8)
        self.class_labels: dict[str, QLabel] = {}
        for row, cls in enumerate(expression_classes()):
            labels.addWidget(_swatch(cls.color), row, 0)
            labels.addWidget(QLabel(cls.name), row, 1)
            self.class_labels[cls.name] = _number()
            labels.addWidget(self.class_labels[cls.name], row, 2)
        labels.setColumnStretch(1, 1)
        layout.addLayout(labels)

        layout.addWidget(_section("Show"))
        filters = QFormLayout()
        filters.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.split_combo = QComboBox()
        self.split_combo.addItem("All splits", None)
        for split in SPLITS:
            self.split_combo.addItem(split, split)
        self.status_combo = QComboBox()
        for text, value in STATUS_CHOICES:
            self.status_combo.addItem(text, value)
        self.label_combo = QComboBox()
        self.label_combo.addItem("All labels", None)
        for cls in expression_classes():
            self.label_combo.addItem(dot_icon(cls.color), cls.name, cls.name)
        filters.addRow("Split", self.split_combo)
        filters.addRow("Status", self.status_combo)
        filters.addRow("Label", self.label_combo)
        layout.addLayout(filters)
        layout.addStretch(1)
        self.setWidget(body)

        for combo in (self.split_combo, self.status_combo, self.label_combo):
            combo.currentIndexChanged.connect(self._emit_filter)
        state.project_changed.connect(self.refresh)
        state.contents_changed.connect(self.refresh)
        state.counts_changed.connect(self.refresh)
        self.refresh()

    def face_filter(self) -> FaceFilter:
        return FaceFilter(
            split=self.split_combo.currentData(),
            labeled=self.status_combo.currentData(),
            label=self.label_combo.currentData(),
        )

    def set_filter(self, face_filter: FaceFilter) -> None:
        for combo, value in (
            (self.split_combo, face_filter.split),
            (self.status_combo, face_filter.labeled),
            (self.label_combo, face_filter.label),
        ):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.blockSignals(False)
        self._emit_filter()

    def _emit_filter(self) -> None:
        self.filter_changed.emit(self.face_filter())

    def refresh(self) -> None:
        project = self.state.project
        stats = self.state.stats() or {}
        self.name_label.setText(project.root.name if project else "No project")
        self.path_label.setText(str(project.root) if project else "Open or create a project (File menu)")
        for key, label in self.total_labels.items():
            label.setText(f"{stats.get(key, 0):,}")
        by_split = stats.get("by_split", {})
        for (split, key), label in self.split_labels.items():
            label.setText(f"{by_split.get(split, {}).get(key, 0):,}")
        by_label = stats.get("by_label", {})
        for name, label in self.class_labels.items():
            label.setText(f"{by_label.get(name, 0):,}")
