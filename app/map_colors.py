"""Point colours for the embedding map: one QBrush per face, from a small shared palette.

Continuous values (confidence, level disagreement) are binned into COLOR_STEPS colours, so
pyqtgraph renders 30,000 points from a handful of cached symbol images instead of one per point.
`order` draws the informative points last (labeled faces above unlabeled ones, etc.). Faces with no
class or value in a colouring (unlabeled, no prediction) are small dim dots, never a grey a class
could wear (neutral is grey too); the selection ring is a green no class colour or colour map comes
near. `color_distance` (CIELAB) is how tests/test_app_map_selection.py checks both.
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
    "vote_entropy": "Vote entropy",
}
COLOR_STEPS = 32
# Vote entropy: blue where the votes agree, red where they split; neither end dark, so a face the
# annotators agree on stays visible on the dark plot (plasma's and inferno's low ends do not).
COLORMAPS = {"confidence": "viridis", "disagreement": "inferno", "vote_entropy": "CET-D1"}
POINT_SIZE = 6  # px
FAINT_SIZE = 4  # px: faces without a class or value in the colouring, context beneath the rest
# Dark enough that even stacked (opaque) it stays far from neutral's lighter blue-grey.
UNLABELED = QColor(74, 79, 88, 170)
MISSING = UNLABELED  # no value in a continuous colouring: the same faint dot
# Neon green: far from every class colour and from viridis and inferno (the ring of a selection).
SELECTION = QColor("#39ff14")


def _lab(color: QColor) -> np.ndarray:
    """CIELAB (D65) of a colour's opaque RGB."""
    rgb = np.array([color.redF(), color.greenF(), color.blueF()])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def color_distance(a: QColor, b: QColor) -> float:
    """CIE76 colour difference (Euclidean in CIELAB) of two colours' opaque RGB: about 2 is just
    noticeable, above 25 reads as another colour."""
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def seen_on(color: QColor, background: QColor) -> QColor:
    """The colour a translucent point shows when drawn alone over `background`."""
    alpha = color.alphaF()
    front = (color.redF(), color.greenF(), color.blueF())
    back = (background.redF(), background.greenF(), background.blueF())
    return QColor.fromRgbF(*(alpha * c + (1 - alpha) * g for c, g in zip(front, back)))


@dataclass
class PointColors:
    brushes: np.ndarray  # object array of QBrush, one per point (in RunMap order)
    legend: list[tuple[str, QColor]]  # what the colours mean
    order: np.ndarray  # drawing order (indexes into the RunMap arrays)
    sizes: np.ndarray | None = None  # point size in px per point; None: POINT_SIZE for all
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
    sizes = np.where(classes >= 0, POINT_SIZE, FAINT_SIZE).astype(np.float32)
    return PointColors(table[index], legend, order, sizes)


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
    sizes = np.where(np.isnan(values), FAINT_SIZE, POINT_SIZE).astype(np.float32)
    return PointColors(table[index], legend, order, sizes)


def _vote_entropy(faces: int, bits: np.ndarray | None) -> PointColors:
    values = np.full(faces, np.nan, np.float32) if bits is None else bits
    voted = int(np.isfinite(values).sum())
    # Seven classes split evenly would be log2(7) = 2.81 bits; the scale ends at the most seen, so
    # a team of three (at most log2(3) = 1.58 bits on a face) still uses the whole colour map.
    high = float(np.nanmax(values)) if voted else 1.0
    colors = _continuous(values, "vote_entropy", 0.0, max(high, 1.0), " bits")
    if bits is None:
        colors.legend, colors.note = [("counting votes…", MISSING)], "Counting the annotators' votes…"
    elif not voted:
        colors.legend = [("fewer than 2 votes", MISSING)]
        colors.note = "No face on this map has votes from two annotators yet"
    else:
        colors.legend.append((f"fewer than 2 votes ({faces - voted:,})", MISSING))
        colors.note = f"Vote entropy of {voted:,} faces with votes from 2+ annotators (0: they agree)"
    return colors


def color_points(run_map: RunMap, mode: str, vote_entropy: np.ndarray | None = None) -> PointColors:
    """`vote_entropy`: for the "vote_entropy" mode, bits per face in run_map order (NaN: fewer
    than two annotators voted on it); None: not known yet."""
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
    if mode == "vote_entropy":
        return _vote_entropy(len(run_map), vote_entropy)
    raise ValueError(f"unknown colour mode {mode!r}; choose one of {', '.join(COLOR_MODES)}")
