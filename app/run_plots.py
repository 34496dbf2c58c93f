"""A run's curves in four small pyqtgraph plots: losses, validation accuracy, mask rate and the
per-class thresholds (in the class colours).

The same widget follows a live run (`add_metrics` with each metrics event) and shows a past run
(`show_series` with the metrics table's curves), so both look alike.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from core.classes import expression_classes

PLOT_BACKGROUND = "#181b20"
AXIS_COLOR = "#8b94a3"
LOSS_COLORS = {"loss_sup": "#6ea8fe", "loss_u": "#f9844a", "loss_text": "#43aa8b", "loss_neg": "#e63946"}
OTHER_COLORS = ("#f2c14e", "#9b5de5", "#d8dde5", "#4f7cc2")
ACCURACY_CURVES = {"val_accuracy": ("classifier", "#6ea8fe"), "val_fused_accuracy": ("fused", "#f2c14e")}


class CurvePlot(QWidget):
    """One plot, its legend as wrapped text below it (never over the curves, never clipped),
    and a hint while it has no curve."""

    def __init__(self, title: str, y_range: tuple[float, float] | None = None):
        super().__init__()
        self.widget = pg.PlotWidget(background=PLOT_BACKGROUND)
        self.item: pg.PlotItem = self.widget.getPlotItem()
        self.item.setTitle(f"<span style='color:#c3c9d3;font-size:11px'>{title}</span>")
        self.item.showGrid(x=True, y=True, alpha=0.15)
        self.item.setMenuEnabled(False)
        self.item.hideButtons()
        for side in ("left", "bottom"):
            axis = self.item.getAxis(side)
            axis.setPen(pg.mkPen(AXIS_COLOR))
            axis.setTextPen(pg.mkPen(AXIS_COLOR))
        self.fixed_y = y_range is not None
        if y_range is not None:
            self.item.getViewBox().setLimits(yMin=y_range[0] - 0.05, yMax=y_range[1] + 0.05)
        self.legend = QLabel()
        self.legend.setObjectName("plotLegend")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.hint = pg.TextItem("no values yet", color="#6b7280", anchor=(0.5, 0.5))
        self.item.getViewBox().addItem(self.hint, ignoreBounds=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.widget, 1)
        layout.addWidget(self.legend)
        self.setMinimumSize(160, 130)
        self._names: list[str] = []
        self._entries: list[str] = []
        self.reset()

    def reset(self) -> None:
        for curve in self.item.listDataItems():
            self.item.removeItem(curve)
        self._names, self._entries = [], []
        self.legend.setText("")
        self.item.getViewBox().setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
        self.hint.setPos(0.5, 0.5)
        self.hint.setVisible(True)

    def legend_names(self) -> list[str]:
        return list(self._names)

    def add_curve(self, name: str, color: str) -> pg.PlotDataItem:
        curve = self.item.plot(pen=pg.mkPen(color, width=1.6))
        self._names.append(name)
        self._entries.append(f"<span style='color:{color}'>━&nbsp;{name}</span>")
        self.legend.setText(" &nbsp; ".join(self._entries))
        self.hint.setVisible(False)
        # Steps grow along x; only plots without a natural y range follow their values.
        self.item.enableAutoRange(x=True, y=not self.fixed_y)
        return curve


class RunCurves(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.losses = CurvePlot("Losses")
        self.accuracy = CurvePlot("Validation accuracy", (0.0, 1.0))
        self.mask = CurvePlot("Mask rate", (0.0, 1.0))
        self.thresholds = CurvePlot("Class thresholds", (0.0, 1.0))
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for i, plot in enumerate((self.losses, self.accuracy, self.mask, self.thresholds)):
            layout.addWidget(plot, i // 2, i % 2)
        self._class_colors = {f"threshold_{c.name}": (c.name, c.color) for c in expression_classes()}
        self._points: dict[str, tuple[list[int], list[float]]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}

    def plots(self) -> tuple[CurvePlot, ...]:
        return self.losses, self.accuracy, self.mask, self.thresholds

    def curve_names(self) -> set[str]:
        return set(self._curves)

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self._curves[name].getData()

    def clear(self) -> None:
        for plot in self.plots():
            plot.reset()
        self._points.clear()
        self._curves.clear()

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
            return self.mask, "share of unlabeled faces used", "#9b5de5"
        if name in self._class_colors:
            return self.thresholds, *self._class_colors[name]
        return None

    def _draw(self, name: str, steps: np.ndarray, values: np.ndarray) -> None:
        curve = self._curves.get(name)
        if curve is None:
            plot, legend_name, color = self._place(name)
            curve = self._curves[name] = plot.add_curve(legend_name, color)
        curve.setData(steps, values)
