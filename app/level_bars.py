"""The evidence of one face as a small painted table: one row per class, one column per level
(semantic, text, instance) and the fused result, each cell a bar with its probability.

A level the run did not produce is drawn as absent (a dash in every cell, "absent" in its
header), never as zeros. The fused bars carry a tick at each class's threshold. The class
column is as wide as the longest class name, so names are never cut.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from core.active.data import LEVELS
from core.classes import expression_classes

COLUMNS = (*LEVELS, "fused")
ROW_HEIGHT = 22
BAR_HEIGHT = 14
HEADER_HEIGHT = 36
NAME_GAP = 10
MIN_CELL = 62  # a bar of 30 px and its number
LEVEL_COLOR = QColor("#6f86a8")  # the three levels share one calm colour; fused bars take the class colour
TRACK_COLOR = QColor("#2b3038")
ROW_HIGHLIGHT = QColor("#262c35")
TEXT = QColor("#d8dde5")
DIM_TEXT = QColor("#7f8896")
THRESHOLD_COLOR = QColor("#f4f5f7")


class LevelBars(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("levelBars")
        self.classes = expression_classes()
        self.levels: dict[str, np.ndarray | None] = {level: None for level in COLUMNS}
        self.thresholds: np.ndarray | None = None
        self.label_index: int | None = None
        self.name_font = QFont()
        self.name_font.setPixelSize(12)
        self.bold_font = QFont(self.name_font)
        self.bold_font.setBold(True)
        self.small_font = QFont()
        self.small_font.setPixelSize(10)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_evidence(
        self,
        levels: dict[str, np.ndarray | None],
        fused: np.ndarray | None,
        thresholds: np.ndarray | None,
        label_index: int | None,
    ) -> None:
        """`levels` semantic/text/instance -> (C,) or None where the run did not produce it."""
        self.levels = {**{level: levels.get(level) for level in LEVELS}, "fused": fused}
        self.thresholds = thresholds
        self.label_index = label_index
        self.update()

    def absent_levels(self) -> list[str]:
        return [level for level in LEVELS if self.levels.get(level) is None]

    def predicted_index(self) -> int | None:
        fused = self.levels.get("fused")
        return int(np.argmax(fused)) if fused is not None else None

    # -- geometry ----------------------------------------------------------------------------
    def _name_width(self) -> int:
        metrics = QFontMetrics(self.bold_font)
        return max(metrics.horizontalAdvance(f"{c.name} ✓") for c in self.classes) + 14 + NAME_GAP

    def minimumSizeHint(self) -> QSize:
        return QSize(self._name_width() + len(COLUMNS) * MIN_CELL, HEADER_HEIGHT + len(self.classes) * ROW_HEIGHT + 4)

    def sizeHint(self) -> QSize:
        return QSize(self._name_width() + len(COLUMNS) * 80, self.minimumSizeHint().height())

    # -- painting ----------------------------------------------------------------------------
    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        name_width = self._name_width()
        cell = (self.width() - name_width) / len(COLUMNS)
        predicted = self.predicted_index()
        for row, cls in enumerate(self.classes):
            top = HEADER_HEIGHT + row * ROW_HEIGHT
            if row == predicted:
                painter.fillRect(QRectF(0, top, self.width(), ROW_HEIGHT), ROW_HIGHLIGHT)
            self._paint_name(painter, cls, top, row == predicted, row == self.label_index)
        for column, level in enumerate(COLUMNS):
            left = name_width + column * cell
            self._paint_header(painter, level, QRectF(left, 0, cell, HEADER_HEIGHT))
            for row, cls in enumerate(self.classes):
                rect = QRectF(
                    left + 3, HEADER_HEIGHT + row * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2, cell - 6, BAR_HEIGHT
                )
                self._paint_cell(painter, level, row, QColor(cls.color), rect)
        painter.end()

    def _paint_name(self, painter: QPainter, cls, top: float, predicted: bool, labeled: bool) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(cls.color))
        painter.drawEllipse(QRectF(2, top + ROW_HEIGHT / 2 - 4, 8, 8))
        painter.setFont(self.bold_font if predicted else self.name_font)
        painter.setPen(TEXT if predicted or labeled else QColor("#b9c0cb"))
        text = f"{cls.name} ✓" if labeled else cls.name  # ✓: the face's current label
        painter.drawText(
            QRectF(14, top, self._name_width() - 14, ROW_HEIGHT),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            text,
        )

    def _paint_header(self, painter: QPainter, level: str, rect: QRectF) -> None:
        probs = self.levels.get(level)
        painter.setFont(self.bold_font if level == "fused" else self.name_font)
        painter.setPen(TEXT if probs is not None else DIM_TEXT)
        painter.drawText(
            rect.adjusted(3, 2, -3, -HEADER_HEIGHT / 2),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom,
            level,
        )
        if probs is None:  # each present level's own top class shows as its brightest bar instead
            painter.setFont(self.small_font)
            painter.setPen(DIM_TEXT)
            painter.drawText(
                rect.adjusted(3, HEADER_HEIGHT / 2, -3, -4),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                "absent",
            )

    def _paint_cell(self, painter: QPainter, level: str, row: int, class_color: QColor, rect: QRectF) -> None:
        probs = self.levels.get(level)
        painter.setPen(Qt.PenStyle.NoPen)
        if probs is None:  # absent, not zero: a dashed outline and a dash
            painter.setPen(QPen(QColor("#3d434d"), 1, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(rect.adjusted(0.5, 0.5, -0.5, -0.5), 3, 3)
            painter.setPen(DIM_TEXT)
            painter.setFont(self.small_font)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "–")
            return
        value = float(np.clip(probs[row], 0.0, 1.0))
        # The number stands beside its bar, so neither the fill nor a threshold tick covers it.
        number = QRectF(rect.right() - self._number_width(), rect.top(), self._number_width(), rect.height())
        rect = rect.adjusted(0, 0, -self._number_width() - 3, 0)
        painter.setBrush(TRACK_COLOR)
        painter.drawRoundedRect(rect, 3, 3)
        fill = QColor(class_color) if level == "fused" else QColor(LEVEL_COLOR)
        if level != "fused" and row != int(np.argmax(probs)):
            fill.setAlpha(150)  # each level's own top class stands out a little
        if value > 0:
            painter.setBrush(fill)
            painter.drawRoundedRect(
                QRectF(rect.left(), rect.top(), max(rect.width() * value, 2.0), rect.height()), 3, 3
            )
        if level == "fused" and self.thresholds is not None:
            x = rect.left() + rect.width() * float(np.clip(self.thresholds[row], 0.0, 1.0))
            painter.setPen(QPen(THRESHOLD_COLOR, 2))
            painter.drawLine(int(round(x)), int(rect.top() - 2), int(round(x)), int(rect.bottom() + 2))
        painter.setFont(self.small_font)
        painter.setPen(TEXT if row == int(np.argmax(probs)) else QColor("#aab2be"))
        painter.drawText(number, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{value:.2f}")

    def _number_width(self) -> int:
        return QFontMetrics(self.small_font).horizontalAdvance("0.00") + 2
