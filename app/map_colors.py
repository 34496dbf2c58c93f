"""Point colours for the embedding map: one QBrush per face, from a small shared palette.

Continuous values (confidence, level disagreement) are binned into COLOR_STEPS colours, so
pyqtgraph renders 30,000 points from a handful of cached symbol images instead of one per point.
`order` draws the informative points last (labeled faces above unlabeled ones, etc.).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QBrush, QColor

from core.classes import expression_classes
from core.run_data import RunMap

COLOR_MODES = {
    "label": "Current label",
    "pseudo": "Pseudo-label",
    "confidence": "Confidence",
    "disagreement": "Level disagreement",
}
COLOR_STEPS = 32
UNLABELED = QColor(110, 118, 130, 120)
MISSING = QColor(90, 90, 90, 90)
COLORMAPS = {"confidence": "viridis", "disagreement": "inferno"}


@dataclass
class PointColors:
    brushes: np.ndarray  # object array of QBrush, one per point (in RunMap order)
    legend: list[tuple[str, QColor]]  # what the colours mean
    order: np.ndarray  # drawing order (indexes into the RunMap arrays)
    note: str = ""  # said beside the legend, e.g. why a mode has nothing to show
    counts: dict[str, int] = field(default_factory=dict)


def _class_palette() -> list[QBrush]:
    return [QBrush(QColor(c.color)) for c in expression_classes()]


def _categorical(classes: np.ndarray, none_label: str) -> PointColors:
    palette = _class_palette() + [QBrush(UNLABELED)]
    table = np.empty(len(palette), dtype=object)
    table[:] = palette
    index = np.where(classes >= 0, classes, len(palette) - 1)
    counts = np.bincount(index, minlength=len(palette))
    legend = [(f"{c.name} ({counts[c.index]:,})", QColor(c.color)) for c in expression_classes()]
    if counts[-1]:
        legend.append((f"{none_label} ({counts[-1]:,})", UNLABELED))
    order = np.argsort(classes >= 0, kind="stable")  # the class-less first, so beneath
    return PointColors(table[index], legend, order)


def _continuous(values: np.ndarray, mode: str, low: float, high: float, unit: str = "") -> PointColors:
    colors = pg.colormap.get(COLORMAPS[mode]).getLookupTable(0.0, 1.0, COLOR_STEPS, alpha=False)
    table = np.empty(COLOR_STEPS + 1, dtype=object)
    table[:COLOR_STEPS] = [QBrush(QColor(int(r), int(g), int(b), 220)) for r, g, b in colors]
    table[COLOR_STEPS] = QBrush(MISSING)
    span = max(high - low, 1e-9)
    scaled = np.clip((np.nan_to_num(values, nan=low) - low) / span, 0.0, 1.0)
    index = np.rint(scaled * (COLOR_STEPS - 1)).astype(np.int64)
    index[np.isnan(values)] = COLOR_STEPS
    legend = []
    for fraction in (1.0, 0.75, 0.5, 0.25, 0.0):
        r, g, b = colors[int(round(fraction * (COLOR_STEPS - 1)))]
        legend.append((f"{low + fraction * span:.2f}{unit}", QColor(int(r), int(g), int(b))))
    order = np.argsort(np.nan_to_num(values, nan=-np.inf), kind="stable")  # high values on top
    return PointColors(table[index], legend, order)


def color_points(run_map: RunMap, mode: str) -> PointColors:
    if mode == "label":
        return _categorical(run_map.labels, "unlabeled")
    if mode == "pseudo":
        return _categorical(run_map.pseudo, "no prediction")
    if mode == "confidence":
        low = 1.0 / len(expression_classes())  # a uniform guess: the least a fused max can be
        return _continuous(run_map.confidence, mode, low, 1.0)
    if mode == "disagreement":
        if run_map.disagreement is None:
            colors = _continuous(np.full(len(run_map), np.nan, np.float32), mode, 0.0, 1.0)
            colors.legend = [("not available", MISSING)]
            colors.note = "This run has one level only: nothing to disagree"
            return colors
        values = run_map.disagreement
        finite = values[np.isfinite(values)]
        high = float(np.percentile(finite, 99)) if finite.size else 1.0  # one outlier must not grey the rest
        colors = _continuous(values, mode, 0.0, max(high, 1e-3), " bits")
        colors.note = "Jensen-Shannon divergence of " + " / ".join(run_map.levels)
        return colors
    raise ValueError(f"unknown colour mode {mode!r}; choose one of {', '.join(COLOR_MODES)}")
