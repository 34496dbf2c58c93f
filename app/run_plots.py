"""A run's curves in four small pyqtgraph plots: losses, validation accuracy, mask rate and the
per-class thresholds (in the class colours).

The same widget follows a live run (`add_metrics` with each metrics event) and shows a past run
(`show_series` with the metrics table's curves), so both look alike. The plots sit in the training
dock's scroll area, so the mouse wheel scrolls the dock; Ctrl+wheel zooms a plot, dragging pans it,
and a double-click or its "Reset view" button shows the whole run again. An empty plot shows no
axes, only what it waits for.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QFont, QFontMetricsF, QMouseEvent, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from core.classes import expression_classes

PLOT_BACKGROUND = "#181b20"
AXIS_COLOR = "#8b94a3"
TICK_FONT_PX = 10
EMPTY_HINT = "curves appear when a run starts"
WAITING_HINT = "waiting for the first values"
ABSENT_HINT = "not measured in this run"
PLOT_TIP = (
    "Drag to pan, Ctrl+wheel to zoom (the wheel alone scrolls the panel); "
    "double-click or Reset view shows the whole run again"
)
LOSS_COLORS = {"loss_sup": "#6ea8fe", "loss_u": "#f9844a", "loss_text": "#43aa8b", "loss_neg": "#e63946"}
OTHER_COLORS = ("#f2c14e", "#9b5de5", "#d8dde5", "#4f7cc2")
ACCURACY_CURVES = {"val_accuracy": ("classifier", "#6ea8fe"), "val_fused_accuracy": ("fused", "#f2c14e")}


def nice_spacing(least: float, whole: bool = False) -> float:
    """The smallest 1-2-5 tick spacing of at least `least` (at least 1 where the ticks are whole)."""
    if whole and least <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(least))
    return next(factor * power for factor in (1, 2, 5, 10) if factor * power >= least * (1 - 1e-9))


class SparseAxis(pg.AxisItem):
    """One level of ticks, 1-2-5 apart and far enough apart for their labels: pyqtgraph's own
    levels run their labels together in a plot this small ("19.619.820.0"). `whole` ticks are
    training steps: integers only, labelled without decimals."""

    def __init__(self, orientation: str, whole: bool = False):
        super().__init__(orientation)
        self.whole = whole
        font = QFont()
        font.setPixelSize(TICK_FONT_PX)
        self.setStyle(tickFont=font, tickTextOffset=3)
        self._metrics = QFontMetricsF(font)

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:
        span = abs(maxVal - minVal)
        if span == 0 or size <= 0:
            return []
        if self.orientation in ("bottom", "top"):
            widest = self.tickStrings([max(abs(minVal), abs(maxVal))], 1.0, nice_spacing(span / 4, self.whole))[0]
            room = self._metrics.horizontalAdvance(widest) + 2 * self._metrics.averageCharWidth()
        else:
            room = 1.3 * self._metrics.height()
        labels = max(1, int(size // room))
        return [(nice_spacing(span / labels, self.whole), 0.0)]

    def boundingRect(self) -> QRectF:
        # With a grid pyqtgraph keeps labels inside the axis and the view, so the labels at the
        # ends of a 0..1 range (half of them past the view's edge) were never drawn.
        # (Only up and down: the plot's title and corner have room; its sides do not.)
        rect = super().boundingRect()
        if self.orientation not in ("left", "right"):
            return rect
        margin = self._metrics.height() / 2 + 1
        return rect.adjusted(0, -margin, 0, margin)

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if self.whole:
            return [str(round(value * scale)) for value in values]
        return super().tickStrings(values, scale, spacing)


class CurveView(pg.PlotWidget):
    """A plot inside the scrolling training dock: the wheel goes on to the dock (Ctrl+wheel zooms
    the plot) and a double-click asks for the whole run again."""

    reset_requested = Signal()

    def wheelEvent(self, ev: QWheelEvent) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev)
        else:
            ev.ignore()  # Qt hands an ignored wheel event to the parents: the dock's scroll area

    def mouseDoubleClickEvent(self, ev: QMouseEvent) -> None:
        self.reset_requested.emit()
        ev.accept()


class CurvePlot(QWidget):
    """One plot, its legend as wrapped text below it (never over the curves, never clipped),
    and, while it has no curve, no axes but a hint saying what it waits for."""

    def __init__(self, title: str, y_range: tuple[float, float] | None = None):
        super().__init__()
        self.widget = CurveView(
            background=PLOT_BACKGROUND,
            axisItems={"bottom": SparseAxis("bottom", whole=True), "left": SparseAxis("left")},
        )
        self.widget.setToolTip(PLOT_TIP)
        self.widget.setMinimumHeight(80)  # a long legend takes its lines from the panel, not from the curves
        self.item: pg.PlotItem = self.widget.getPlotItem()
        self.item.setTitle(f"<span style='color:#c3c9d3;font-size:11px'>{title}</span>", size="11px")
        self.item.showGrid(x=True, y=True, alpha=0.15)
        self.item.setMenuEnabled(False)
        self.item.hideButtons()
        for side in ("left", "bottom"):
            axis = self.item.getAxis(side)
            axis.setPen(pg.mkPen(AXIS_COLOR))
            axis.setTextPen(pg.mkPen(AXIS_COLOR))
        self.view: pg.ViewBox = self.item.getViewBox()
        self.y_range = y_range
        if y_range is not None:
            self.view.setLimits(yMin=y_range[0] - 0.05, yMax=y_range[1] + 0.05)
        self.reset_button = QToolButton()
        self.reset_button.setObjectName("plotReset")
        self.reset_button.setText("Reset view")
        self.reset_button.setToolTip("Show the whole run again (or double-click the plot)")
        self.reset_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.reset_button.clicked.connect(self.reset_view)
        self.widget.reset_requested.connect(self.reset_view)
        self.view.sigRangeChangedManually.connect(self._zoomed)
        self.legend = QLabel()
        self.legend.setObjectName("plotLegend")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.hint = QLabel(EMPTY_HINT, self.widget)  # over the plot, wrapped to its width
        self.hint.setObjectName("plotHint")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)
        self.hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        below = QHBoxLayout()  # the legend, and beside it the way back once the user has zoomed
        below.setContentsMargins(0, 0, 0, 0)
        below.setSpacing(0)
        below.addWidget(self.legend, 1)
        below.addWidget(self.reset_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.widget, 1)
        layout.addLayout(below)
        self.setMinimumSize(160, 130)
        self._names: list[str] = []
        self._entries: list[str] = []
        self.reset()

    def reset(self, hint: str = EMPTY_HINT) -> None:
        """No curves: no axes (no made-up 0..1 ticks), only `hint`."""
        for curve in self.item.listDataItems():
            self.item.removeItem(curve)
        self._names, self._entries = [], []
        self.legend.setText("")
        for side in ("left", "bottom"):
            self.item.hideAxis(side)
        self.view.setMouseEnabled(x=False, y=False)  # nothing to pan or zoom
        self.view.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
        self.hint.setText(hint)
        self.hint.setVisible(True)
        self.zoomed = False
        self.reset_button.hide()

    def is_empty(self) -> bool:
        return not self._names

    def set_hint(self, hint: str) -> None:
        self.hint.setText(hint)

    def legend_names(self) -> list[str]:
        return list(self._names)

    def add_curve(self, name: str, color: str) -> pg.PlotDataItem:
        curve = self.item.plot(pen=pg.mkPen(color, width=1.6), symbolBrush=color, symbolPen=None, symbolSize=5)
        if self.is_empty():
            for side in ("left", "bottom"):
                self.item.showAxis(side)
            self.view.setMouseEnabled(x=True, y=True)
        self._names.append(name)
        self._entries.append(f"<span style='color:{color}'>━&nbsp;{name}</span>")
        self.legend.setText(" &nbsp; ".join(self._entries))
        self.hint.setVisible(False)
        if not self.zoomed:  # a zoomed plot stays where the user put it
            self.reset_view()
        return curve

    def reset_view(self) -> None:
        """The whole run: steps along x, and the plot's natural y range where it has one."""
        if self.is_empty():
            return
        if self.y_range is not None:
            self.view.setYRange(*self.y_range, padding=0.02)
        self.item.enableAutoRange(x=True, y=self.y_range is None)
        self.zoomed = False
        self.reset_button.hide()

    def _zoomed(self, *_args) -> None:
        self.zoomed = True
        self.reset_button.show()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.hint.setGeometry(self.widget.rect().adjusted(8, 8, -8, -8))


class RunCurves(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.losses = CurvePlot("Losses")
        self.accuracy = CurvePlot("Validation accuracy", (0.0, 1.0))
        self.mask_rate = CurvePlot("Mask rate", (0.0, 1.0))
        self.thresholds = CurvePlot("Class thresholds", (0.0, 1.0))
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for i, plot in enumerate((self.losses, self.accuracy, self.mask_rate, self.thresholds)):
            layout.addWidget(plot, i // 2, i % 2)
        self._class_colors = {f"threshold_{c.name}": (c.name, c.color) for c in expression_classes()}
        self._points: dict[str, tuple[list[int], list[float]]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}

    def plots(self) -> tuple[CurvePlot, ...]:
        return self.losses, self.accuracy, self.mask_rate, self.thresholds

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._line_up_legends()

    def _line_up_legends(self) -> None:
        """The two plots of a row equally tall, their axes level: each legend of a row takes as
        many lines as the row's longest (the seven class names wrap where the others do not)."""
        for row in ((self.losses, self.accuracy), (self.mask_rate, self.thresholds)):
            height = max(plot.legend.heightForWidth(max(plot.width(), 1)) for plot in row)
            for plot in row:
                plot.legend.setMinimumHeight(max(height, 0))

    def curve_names(self) -> set[str]:
        return set(self._curves)

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self._curves[name].getData()

    def clear(self, hint: str = EMPTY_HINT) -> None:
        """No curves; each plot says `hint` (EMPTY_HINT before any run, WAITING_HINT as one starts)."""
        for plot in self.plots():
            plot.reset(hint)
        self._points.clear()
        self._curves.clear()
        self._line_up_legends()

    def add_metrics(self, step: int, values: dict) -> None:
        """One metrics event of a live run."""
        for name, value in values.items():
            if value is None or self._place(name) is None:
                continue
            steps, ys = self._points.setdefault(name, ([], []))
            steps.append(step)
            ys.append(float(value))
            self._draw(name, np.asarray(steps), np.asarray(ys))

    def show_series(self, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """A finished (or stored) run's curves at once, replacing what is shown."""
        self.clear()
        for name in sorted(series, key=self._rank):
            if self._place(name) is not None:
                steps, values = series[name]
                self._points[name] = (list(steps), list(values))
                self._draw(name, np.asarray(steps), np.asarray(values))
        for plot in self.plots():
            if plot.is_empty():  # e.g. a supervised run's mask rate
                plot.set_hint(ABSENT_HINT)

    def _rank(self, name: str) -> tuple[int, str]:
        """Legend order: losses as in LOSS_COLORS, thresholds in class order, the rest by name."""
        order = [*LOSS_COLORS, *ACCURACY_CURVES, *self._class_colors]
        return (order.index(name), name) if name in order else (len(order), name)

    def _place(self, name: str) -> tuple[CurvePlot, str, str] | None:
        """Which plot shows a metric, under which legend name and in which colour."""
        if name.startswith("loss_"):
            color = LOSS_COLORS.get(name) or OTHER_COLORS[len(self._curves) % len(OTHER_COLORS)]
            return self.losses, name.removeprefix("loss_"), color
        if name in ACCURACY_CURVES:
            return self.accuracy, *ACCURACY_CURVES[name]
        if name == "mask_rate":
            return self.mask_rate, "share of unlabeled faces used", "#9b5de5"
        if name in self._class_colors:
            return self.thresholds, *self._class_colors[name]
        return None

    def _draw(self, name: str, steps: np.ndarray, values: np.ndarray) -> None:
        curve = self._curves.get(name)
        if curve is None:
            place = self._place(name)
            if place is None:  # not a metric these plots show (the callers skip those)
                return
            plot, legend_name, color = place
            curve = self._curves[name] = plot.add_curve(legend_name, color)
            self._line_up_legends()
        curve.setData(steps, values)
        curve.setSymbol("o" if len(steps) == 1 else None)  # one point draws no line
