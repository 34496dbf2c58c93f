"""The training settings a user picks in the studio, turned into core's TrainSettings.

Only the main settings are here (algorithm, encoder, mode, steps, batch size, seed, device, map,
and SIT-FER's method switches); everything else keeps its default, and every setting remains a
flag of `python main.py train` for the rest.
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

from core.ssl.config import ALGORITHM_NAMES, MethodConfig, algorithm_traits
from core.training.settings import MODES, PROJECTIONS, LoopConfig, TrainSettings

ENCODER_CHOICES = ("offline", "tiny", "clip:ViT-B-32:openai")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
# Each algorithm's main switches, as (MethodConfig field, label): every ablation is a tick.
# The rest of MethodConfig stays at its defaults (the command line reaches all of it).
SWITCHES: dict[str, tuple[tuple[str, str], ...]] = {
    "sitfer": (("use_semantic", "semantic level"), ("use_text", "text level"), ("use_instance", "instance level"),
               ("dynamic_threshold", "dynamic thresholds"), ("negative_learning", "negative learning"),
               ("leaf_modules", "LEAF modules")),
    "fixmatch": (("leaf_modules", "LEAF modules"),),
    "leaf": (("leaf_semantic_experts", "semantic experts"), ("leaf_instance_experts", "instance experts"),
             ("leaf_category", "category level"), ("leaf_consistency", "view consistency"),
             ("leaf_contrast", "instance contrast")),
    "dta-snl": (("dynamic_threshold", "dynamic thresholds"), ("negative_learning", "negative learning"),
                ("teacher_pseudo_labels", "EMA teacher labels")),
}
TITLES = {"sitfer": "SIT-FER", "fixmatch": "FixMatch", "leaf": "LEAF", "dta-snl": "DTA-SNL"}
TOOLTIPS = {
    "leaf_modules": "LEAF's gated experts, positive/negative pseudo-label sets and view consistency, added on top",
    "leaf_semantic_experts": "gated expression-relevant and -agnostic experts in front of the classifier",
    "leaf_instance_experts": "gated experts in front of the embedding",
    "leaf_category": "ambiguous pseudo-labels as positive and negative class sets",
    "dta-snl": "in fine-tune mode DTA-SNL also uses local attention and region dropout on the feature map",
}


def _switch_default(name: str, algorithm: str) -> bool:
    """A switch's default: MethodConfig's, or where that is None (dynamic thresholds), the algorithm's."""
    value = getattr(MethodConfig(), name)
    return bool(getattr(algorithm_traits(algorithm), name) if value is None else value)


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
        self.algorithm = _combo(sorted(ALGORITHM_NAMES), "sitfer")
        self.encoder = _combo(ENCODER_CHOICES, "offline", editable=True)
        self.encoder.setToolTip("offline (pretrained, no download), tiny (tests only), or clip:MODEL[:PRETRAINED]")
        self.mode = _combo(MODES, "head")
        self.mode.setToolTip("head: frozen encoder, cached features, fast on a CPU; finetune: the encoder "
                             "trains too (a GPU is advised)")
        self.device = _combo(DEVICE_CHOICES, "auto")
        self.projection = _combo(PROJECTIONS, "umap")
        self.projection.setToolTip("the 2-D map written with the run: umap (slower, also writes pca), pca, none")
        self.steps = _spin(1, 1_000_000, 1500, 100)
        self.batch_size = _spin(1, 4096, loop.batch_size, 8)
        self.seed = _spin(0, 999_999, loop.seed)
        # One box per field; an algorithm shows the boxes it reads (dynamic_threshold is shared).
        self.switches = {name: QCheckBox(label) for options in SWITCHES.values() for name, label in options}
        for name, box in self.switches.items():
            box.setChecked(_switch_default(name, "sitfer"))
            if name in TOOLTIPS:
                box.setToolTip(TOOLTIPS[name])

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(5)
        fields = (("Algorithm", self.algorithm), ("Encoder", self.encoder), ("Mode", self.mode),
                  ("Device", self.device), ("Steps", self.steps), ("Batch size", self.batch_size),
                  ("Seed", self.seed), ("Map", self.projection))
        for i, (title, widget) in enumerate(fields):
            row, column = divmod(i, 2)
            grid.addWidget(QLabel(title), row, 2 * column)
            grid.addWidget(widget, row, 2 * column + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.switches_title = QLabel(TITLES["sitfer"])
        self.switches_title.setObjectName("columnHeader")
        first = len(fields) // 2
        grid.addWidget(self.switches_title, first, 0)
        self.switch_grid = QGridLayout()  # their own two columns, so they do not widen the fields above
        self.switch_grid.setContentsMargins(0, 0, 0, 0)
        self.switch_grid.setVerticalSpacing(3)
        grid.addLayout(self.switch_grid, first, 1, 1, 3)

        self.algorithm.currentTextChanged.connect(self._algorithm_changed)
        for combo in (self.algorithm, self.encoder, self.mode, self.device, self.projection):
            combo.currentTextChanged.connect(self.changed)
        for spin in (self.steps, self.batch_size, self.seed):
            spin.valueChanged.connect(self.changed)
        self._algorithm_changed(self.algorithm.currentText())

    def _algorithm_changed(self, algorithm: str) -> None:
        relevant = [name for name, _label in SWITCHES.get(algorithm, ())]
        for name, box in self.switches.items():  # re-laid in the algorithm's order, two columns
            self.switch_grid.removeWidget(box)
            box.setVisible(name in relevant)
            box.setEnabled(name in relevant)
        for i, name in enumerate(relevant):
            self.switch_grid.addWidget(self.switches[name], i // 2, i % 2)
            if getattr(MethodConfig(), name) is None:  # a shared box whose default is the algorithm's own
                self.switches[name].setChecked(_switch_default(name, algorithm))
        self.switches_title.setText(TITLES.get(algorithm, ""))
        self.switches_title.setToolTip(TOOLTIPS.get(algorithm, ""))
        self.switches_title.setVisible(bool(relevant))

    def settings(self) -> TrainSettings:
        """The chosen settings (not yet validated: TrainSettings.validate says what is wrong)."""
        relevant = [name for name, _label in SWITCHES.get(self.algorithm.currentText(), ())]
        method = MethodConfig(**{name: self.switches[name].isChecked() for name in relevant})
        steps, defaults = self.steps.value(), LoopConfig()
        # Short runs log and validate more often than the defaults, so their curves still show.
        loop = LoopConfig(steps=steps, batch_size=self.batch_size.value(), seed=self.seed.value(),
                          log_every=min(defaults.log_every, max(1, steps // 30)),
                          eval_every=min(100, max(1, steps // 10)))
        device = self.device.currentText()
        return TrainSettings(algorithm=self.algorithm.currentText(), encoder=self.encoder.currentText().strip(),
                             mode=self.mode.currentText(), device=None if device == "auto" else device,
                             method=method, loop=loop, projection=self.projection.currentText())

    def set_values(self, *, algorithm: str | None = None, encoder: str | None = None, steps: int | None = None,
                   batch_size: int | None = None, projection: str | None = None, mode: str | None = None) -> None:
        """Set some fields at once (tests, scripted screenshots)."""
        for combo, value in ((self.algorithm, algorithm), (self.encoder, encoder),
                             (self.projection, projection), (self.mode, mode)):
            if value is not None:
                combo.setCurrentText(value)
        for spin, value in ((self.steps, steps), (self.batch_size, batch_size)):
            if value is not None:
                spin.setValue(value)
