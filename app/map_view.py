"""The map's ViewBox: pan and zoom, or draw a selection rectangle or a freehand lasso.

The tool is chosen with `tool` ("pan", "rect", "lasso"); in pan mode Shift+drag draws a
rectangle and Ctrl+drag a lasso. Shapes are reported in data coordinates; which points they
hold is core.geometry's business.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath
from PySide6.QtWidgets import QGraphicsPathItem

from app.map_colors import SELECTION

TOOLS = ("pan", "rect", "lasso")
MIN_LASSO_STEP_PX = 3.0  # lasso vertices closer than this on screen are dropped


class SelectionViewBox(pg.ViewBox):
    rect_drawn = Signal(object, object)  # two opposite corners (x, y)
    lasso_drawn = Signal(object)  # (m, 2) array: the polygon's vertices

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tool = "pan"
        self._shape = ""
        self._points: list[tuple[float, float]] = []
        self._last_screen: QPointF | None = None
        self.outline = QGraphicsPathItem()
        # The colour of the rings the selection leaves (app/map_colors.py: no class colour is near it).
        pen = pg.mkPen(SELECTION, width=1.5, style=Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.outline.setPen(pen)
        fill = QColor(SELECTION)
        fill.setAlpha(40)
        self.outline.setBrush(pg.mkBrush(fill))
        self.outline.setZValue(1e6)
        self.outline.setVisible(False)
        self.addItem(self.outline, ignoreBounds=True)

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool

    def _shape_for(self, ev) -> str:
        if self.tool != "pan":
            return self.tool
        if ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            return "rect"
        if ev.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.MetaModifier):
            return "lasso"
        return ""

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        if ev.isStart():
            self._shape = self._shape_for(ev)
            self._points = []
            self._last_screen = None
        if not self._shape:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        if ev.isStart():
            self._add_point(ev.buttonDownPos(), force=True)
        self._add_point(ev.pos(), force=ev.isFinish())
        self._draw_outline()
        if ev.isFinish():
            self._finish()

    def _add_point(self, screen: QPointF, force: bool) -> None:
        if self._shape == "rect":  # the corner where the drag began, and the current one
            self._points = self._points[:1] + [self._to_data(screen)]
            return
        if (
            not force
            and self._last_screen is not None
            and (screen - self._last_screen).manhattanLength() < MIN_LASSO_STEP_PX
        ):
            return
        self._last_screen = QPointF(screen)
        self._points.append(self._to_data(screen))

    def _to_data(self, screen: QPointF) -> tuple[float, float]:
        point = self.mapToView(screen)
        return point.x(), point.y()

    def _draw_outline(self) -> None:
        path = QPainterPath()
        if self._shape == "rect" and len(self._points) == 2:
            (x0, y0), (x1, y1) = self._points
            path.addRect(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
        elif self._points:
            path.moveTo(*self._points[0])
            for point in self._points[1:]:
                path.lineTo(*point)
            path.closeSubpath()
        self.outline.setPath(path)
        self.outline.setVisible(True)

    def _finish(self) -> None:
        self.outline.setVisible(False)
        shape, points = self._shape, self._points
        self._shape, self._points = "", []
        if shape == "rect" and len(points) == 2:
            self.rect_drawn.emit(points[0], points[1])
        elif shape == "lasso" and len(points) >= 3:
            self.lasso_drawn.emit(np.asarray(points, dtype=np.float64))
