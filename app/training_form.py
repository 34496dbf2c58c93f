"""The training settings a user picks in the studio, turned into core's TrainSettings.

Only the main settings are here (algorithm, encoder, mode, steps, batch size, seed, device, map,
face geometry, soft labels from the annotators' votes, and each algorithm's method switches and
SIT-FER's instance warm-up); everything else keeps its default, and every
setting remains a flag of `python main.py train` for the rest. Steps and the warm-up start at
"auto": the numbers the run will choose for this project's train faces are shown in the boxes
(TrainSettings.resolved), and a ticked level that cannot appear in the run is said under the form
before Start (TrainSettings.level_warnings).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from core.encoders import DEFAULT_ENCODER, ENCODERS, REGISTRY, offered_encoders
from core.ssl.config import MethodConfig
from core.ssl.spec import ALGORITHM_NAMES, ALGORITHM_SPECS, DEFAULT_ALGORITHM, Switch, algorithm_traits
from core.studio_api import TrainCounts
from core.training.settings import MODES, PROJECTIONS, LoopConfig, TrainSettings

DEVICE_CHOICES = ("auto", "cpu", "cuda")
AUTO_STEPS = 0  # the steps box's "auto" value
AUTO_WARMUP = -1  # the warm-up box's (0 is a real warm-up: the instance level from the first step)
GEOMETRY_TIP = (
    "head mode: the geometry of each face's 468-point face mesh (eye line level, scale-free) joins "
    "the image features; computed once per face and cached"
)
GEOMETRY_TIP_FINETUNE = "fine-tune mode trains on the images alone; face geometry is a head-mode input"
SOFT_LABELS_TIP = (
    "each labeled face's target is its annotators' vote shares (2 of 3 say fear: 2/3 fear, 1/3 the other), "
    "frozen at the run's start; faces without votes keep their label"
)


def _switch_default(name: str, algorithm: str) -> bool:
    """A switch's default: MethodConfig's, or where that is None (dynamic thresholds), the algorithm's."""
    value = getattr(MethodConfig(), name)
    return bool(getattr(algorithm_traits(algorithm), name) if value is None else value)


def _switch_fields(algorithm: str) -> list[str]:
    """The MethodConfig fields of the algorithm's switches, in its spec's order (none for a name
    typed in that has no spec: its settings are the defaults, and validation names the problem)."""
    spec = ALGORITHM_SPECS.get(algorithm)
    return [switch.field for switch in spec.switches] if spec else []


def _switch_box(switch: Switch, form: QWidget) -> QCheckBox:
    # A child of the form from the start: a parentless box shown before the switch grid adopts it
    # opens as a window of its own, and adopting it hides it again (leaf's boxes never showed).
    box = QCheckBox(switch.label, form)
    box.setToolTip(switch.tooltip)
    return box


def _combo(choices, current: str, editable: bool = False) -> QComboBox:
    combo = QComboBox()
    # Sized by a few characters, not the longest choice, so a narrow dock can hold the form.
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(6)
    combo.addItems(list(choices))
    combo.setEditable(editable)
    combo.setCurrentText(current)
    return combo


def _spin(low: int, high: int, value: int, step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setGroupSeparatorShown(True)
    return spin


class TrainingForm(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        loop = LoopConfig()
        self.algorithm = _combo(sorted(ALGORITHM_NAMES), DEFAULT_ALGORITHM)
        self.algorithm.setToolTip("\n".join(f"{spec.name}: {spec.description}" for spec in ALGORITHM_SPECS.values()))
        # The registry's offered encoders; any other spec (clip:MODEL[:PRETRAINED]) can be typed.
        self.encoder = _combo(offered_encoders(), DEFAULT_ENCODER, editable=True)
        self.encoder.setToolTip(
            "\n".join(f"{name}: {text}" for name, text in ENCODERS.items() if REGISTRY[name].offered)
        )
        self.mode = _combo(MODES, "head")
        self.mode.setToolTip(
            "head: frozen encoder, cached features, fast on a CPU; finetune: the encoder trains too (a GPU is advised)"
        )
        self.device = _combo(DEVICE_CHOICES, "auto")
        self.projection = _combo(PROJECTIONS, "umap")
        self.projection.setToolTip("the 2-D map written with the run: umap (slower, also writes pca), pca, none")
        self.steps = _spin(AUTO_STEPS, 1_000_000, AUTO_STEPS, 100)
        self.steps.setToolTip(
            "auto: chosen from the number of labeled and unlabeled train faces; type a number to choose yourself"
        )
        self.warmup = _spin(AUTO_WARMUP, 1_000_000, AUTO_WARMUP, 50)
        self.warmup.setToolTip(
            "steps before pseudo-labeled faces join SIT-FER's instance level; auto: a fifth of the steps"
        )
        self.auto_note = QLabel()  # what "auto" comes to for this project
        self.auto_note.setObjectName("columnHeader")
        self.auto_note.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setObjectName("formWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #f2c14e;")
        self.warning.setVisible(False)
        self.counts: TrainCounts | None = None
        self.geometry_box = QCheckBox("face mesh")  # not `geometry`: that is QWidget.geometry()
        self.geometry_box.setChecked(TrainSettings.geometry)
        self.soft_labels_box = QCheckBox("annotators' votes")
        self.soft_labels_box.setChecked(TrainSettings.soft_labels)
        self.soft_labels_box.setToolTip(SOFT_LABELS_TIP)
        self.batch_size = _spin(1, 4096, loop.batch_size, 8)
        self.seed = _spin(0, 999_999, loop.seed)
        # One box per field; an algorithm shows the boxes it reads (dynamic_threshold is shared).
        # The fields are gathered first: a box made per algorithm's switch would leave the shared
        # ones' first boxes behind, shown at the form's top left over "Algorithm".
        fields_once = {switch.field: switch for spec in ALGORITHM_SPECS.values() for switch in spec.switches}
        self.switches = {name: _switch_box(switch, self) for name, switch in fields_once.items()}
        for name, box in self.switches.items():
            box.setChecked(_switch_default(name, DEFAULT_ALGORITHM))

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(5)
        fields: tuple[tuple[str, QWidget], ...] = (
            ("Algorithm", self.algorithm),
            ("Encoder", self.encoder),
            ("Mode", self.mode),
            ("Device", self.device),
            ("Steps", self.steps),
            ("Batch size", self.batch_size),
            ("Seed", self.seed),
            ("Map", self.projection),
            ("Geometry", self.geometry_box),
            ("Soft labels", self.soft_labels_box),
            ("Warm-up", self.warmup),
        )
        titles = {}
        for i, (title, widget) in enumerate(fields):
            row, column = divmod(i, 2)
            titles[title] = QLabel(title)
            grid.addWidget(titles[title], row, 2 * column)
            grid.addWidget(widget, row, 2 * column + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.warmup_title, self.geometry_title = titles["Warm-up"], titles["Geometry"]
        self.switches_title = QLabel(ALGORITHM_SPECS[DEFAULT_ALGORITHM].title)
        self.switches_title.setObjectName("columnHeader")
        first = (len(fields) + 1) // 2
        grid.addWidget(self.switches_title, first, 0)
        self.switch_grid = QGridLayout()  # their own two columns, so they do not widen the fields above
        self.switch_grid.setContentsMargins(0, 0, 0, 0)
        self.switch_grid.setVerticalSpacing(3)
        grid.addLayout(self.switch_grid, first, 1, 1, 3)
        grid.addWidget(self.auto_note, first + 1, 0, 1, 4)
        grid.addWidget(self.warning, first + 2, 0, 1, 4)

        self.algorithm.currentTextChanged.connect(self._algorithm_changed)
        for combo in (self.algorithm, self.encoder, self.mode, self.device, self.projection):
            combo.currentTextChanged.connect(self.changed)
        for spin in (self.steps, self.batch_size, self.seed, self.warmup):
            spin.valueChanged.connect(self.changed)
        for box in (*self.switches.values(), self.geometry_box, self.soft_labels_box):
            box.toggled.connect(self.changed)
        self.mode.currentTextChanged.connect(self._mode_changed)
        self._mode_changed(self.mode.currentText())
        self.changed.connect(self._show_resolved)
        self._algorithm_changed(self.algorithm.currentText())
        self._show_resolved()

    def _algorithm_changed(self, algorithm: str) -> None:
        spec = ALGORITHM_SPECS.get(algorithm)
        relevant = _switch_fields(algorithm)
        for name, box in self.switches.items():  # re-laid in the algorithm's order, two columns
            self.switch_grid.removeWidget(box)
            box.setVisible(name in relevant)
            box.setEnabled(name in relevant)
        for i, name in enumerate(relevant):
            self.switch_grid.addWidget(self.switches[name], i // 2, i % 2)
            if getattr(MethodConfig(), name) is None:  # a shared box whose default is the algorithm's own
                self.switches[name].setChecked(_switch_default(name, algorithm))
        self.switches_title.setText(spec.title if spec else "")
        self.switches_title.setToolTip(spec.description if spec else "")
        self.switches_title.setVisible(bool(relevant))
        instance = spec is not None and spec.traits.instance_level
        for widget in (self.warmup, self.warmup_title):
            widget.setVisible(instance)

    def _mode_changed(self, mode: str) -> None:
        # Geometry joins cached features: head mode only.
        self.geometry_box.setEnabled(mode == "head")
        self.geometry_box.setToolTip(GEOMETRY_TIP if mode == "head" else GEOMETRY_TIP_FINETUNE)

    def settings(self) -> TrainSettings:
        """The chosen settings (not yet validated: TrainSettings.validate says what is wrong)."""
        algorithm = self.algorithm.currentText()
        relevant = _switch_fields(algorithm)
        method = MethodConfig()
        for name in relevant:  # boolean fields (spec.Switch), named at run time
            setattr(method, name, self.switches[name].isChecked())
        if self.warmup.isVisibleTo(self) and self.warmup.value() != AUTO_WARMUP:
            method.instance_warmup = self.warmup.value()
        steps = None if self.steps.value() == AUTO_STEPS else self.steps.value()
        # Short runs log more often than the default, so their curves still show; validation and
        # checkpoints follow the steps by themselves ("auto").
        shown_steps = steps or self._auto_steps()
        log_every = (
            LoopConfig().log_every if shown_steps is None else min(LoopConfig().log_every, max(1, shown_steps // 30))
        )
        loop = LoopConfig(steps=steps, batch_size=self.batch_size.value(), seed=self.seed.value(), log_every=log_every)
        device = self.device.currentText()
        return TrainSettings(
            algorithm=self.algorithm.currentText(),
            encoder=self.encoder.currentText().strip(),
            mode=self.mode.currentText(),
            device=None if device == "auto" else device,
            method=method,
            loop=loop,
            projection=self.projection.currentText(),
            geometry=self.geometry_box.isChecked(),
            soft_labels=self.soft_labels_box.isChecked(),
        )

    # -- "auto" and what it comes to for this project -------------------------------------------
    def set_train_counts(self, counts: TrainCounts | None) -> None:
        """The open project's labeled and unlabeled train faces (None: no project)."""
        self.counts = counts
        self._show_resolved()

    def resolved(self) -> TrainSettings | None:
        """The settings with "auto" chosen as the run will choose it, or None without a project."""
        if self.counts is None:
            return None
        return self.settings().resolved(self.counts.labeled, self.counts.unlabeled)

    def _auto_steps(self) -> int | None:
        if self.counts is None:
            return None
        return (
            TrainSettings(algorithm=self.algorithm.currentText(), loop=LoopConfig(batch_size=self.batch_size.value()))
            .resolved(self.counts.labeled, self.counts.unlabeled)
            .loop.steps
        )

    def steps_text(self) -> str:
        """e.g. "auto: 200 steps" or "1,500 steps"."""
        if self.steps.value() != AUTO_STEPS:
            return f"{self.steps.value():,} steps"
        auto = self._auto_steps()
        return f"auto: {auto:,} steps" if auto is not None else "auto steps"

    def _show_resolved(self) -> None:
        resolved = self.resolved()
        steps = resolved.loop.steps if resolved is not None else None
        self.steps.setSpecialValueText(f"auto ({steps:,})" if steps else "auto")
        warmup = resolved.method.instance_warmup if resolved is not None else None
        self.warmup.setSpecialValueText(f"auto ({warmup:,})" if warmup is not None else "auto")
        self.auto_note.setText(self._auto_note(resolved))
        self.auto_note.setVisible(bool(self.auto_note.text()))
        warnings = resolved.level_warnings() if resolved is not None else []
        self.warning.setText("\n".join(f"⚠ {text[:1].upper()}{text[1:]}." for text in warnings))
        self.warning.setVisible(bool(warnings))

    def _auto_note(self, resolved: TrainSettings | None) -> str:
        """e.g. "Auto: 200 steps for this project (70 labeled, 630 unlabeled train faces);
        the instance level joins at step 40." ('' when nothing is left to auto)."""
        if resolved is None or self.counts is None:
            return ""
        parts = []
        if self.steps.value() == AUTO_STEPS:
            parts.append(
                f"{resolved.loop.steps:,} steps for this project ({self.counts.labeled:,} labeled, "
                f"{self.counts.unlabeled:,} unlabeled train faces)"
            )
        if (
            self.warmup.isVisibleTo(self)
            and self.warmup.value() == AUTO_WARMUP
            and self.switches["use_instance"].isChecked()
        ):
            parts.append(f"the instance level joins at step {resolved.method.instance_warmup:,}")
        return ("Auto: " + "; ".join(parts) + ".") if parts else ""

    def warnings(self) -> list[str]:
        resolved = self.resolved()
        return resolved.level_warnings() if resolved is not None else []

    def reset_to(self, settings: TrainSettings) -> None:
        """Show `settings`' main values (the defaults, for a project's first model)."""
        self.set_values(
            algorithm=settings.algorithm,
            encoder=settings.encoder,
            mode=settings.mode,
            projection=settings.projection,
            batch_size=settings.loop.batch_size,
        )
        self.device.setCurrentText(settings.device or "auto")
        self.steps.setValue(settings.loop.steps or AUTO_STEPS)
        self.seed.setValue(settings.loop.seed)
        self.soft_labels_box.setChecked(settings.soft_labels)
        warmup = settings.method.instance_warmup
        self.warmup.setValue(AUTO_WARMUP if warmup is None else warmup)
        for name, box in self.switches.items():
            if box.isEnabled():
                box.setChecked(
                    _switch_default(name, settings.algorithm)
                    if getattr(settings.method, name) is None
                    else bool(getattr(settings.method, name))
                )

    def set_values(
        self,
        *,
        algorithm: str | None = None,
        encoder: str | None = None,
        steps: int | None = None,
        batch_size: int | None = None,
        projection: str | None = None,
        mode: str | None = None,
    ) -> None:
        """Set some fields at once (tests, scripted screenshots)."""
        for combo, value in (
            (self.algorithm, algorithm),
            (self.encoder, encoder),
            (self.projection, projection),
            (self.mode, mode),
        ):
            if value is not None:
                combo.setCurrentText(value)
        for spin, number in ((self.steps, steps), (self.batch_size, batch_size)):
            if number is not None:
                spin.setValue(number)
