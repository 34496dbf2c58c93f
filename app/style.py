"""The studio's look: Fusion with a calm dark palette, plus a small style sheet for the panels.

Buttons, combo boxes, scroll bars and progress bars are left to Fusion (drawn from the
palette), so they keep their native arrows and states; the sheet only names our own widgets.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

ACCENT = "#6ea8fe"
BASE_FONT_PX = 13

STYLE_SHEET = """
QToolTip { background: #2b3038; color: #e6e9ee; border: 1px solid #3d434d; padding: 4px; }
QMenuBar { background: #1a1d22; border-bottom: 1px solid #2d3139; }
QMenuBar::item { padding: 4px 10px; background: transparent; }
QMenuBar::item:selected { background: #2f3540; border-radius: 4px; }

#projectPanel, #projectPanelBody { background: #23272e; }
#projectName { font-size: 17px; font-weight: 600; color: #f1f3f6; }
#projectPath { color: #8b94a3; font-size: 11px; }
#sectionTitle { color: #7f8896; font-size: 11px; font-weight: 600; letter-spacing: 1px;
                padding-top: 10px; padding-bottom: 3px; border-bottom: 1px solid #343a44; }
#columnHeader { color: #7f8896; font-size: 11px; }
#count { color: #f1f3f6; font-weight: 600; }
#emptyHint { color: #8b94a3; font-size: 15px; background: #1b1e23; }
#preparingPage { background: #1b1e23; }

#faceGrid { background: #1b1e23; border: none; }
QSplitter::handle { background: #2d3139; }

QDockWidget { color: #c3c9d3; }
QDockWidget::title { background: #1a1d22; padding: 5px 8px; border-bottom: 1px solid #2d3139; }
#trainingPanel, #embeddingMap { background: #1f2329; }
#hoverCard { background: #2b3038; border: 1px solid #3d434d; border-radius: 6px; }
#hoverCard QLabel { color: #e6e9ee; background: transparent; }
#plotLegend { background: #181b20; color: #c3c9d3; font-size: 11px; padding: 0 6px 4px 6px; }
#selectionBanner { background: #232a24; border: 1px solid #3d434d; border-left: 3px solid #39ff14;
                   border-radius: 4px; }
#selectionBanner QLabel { color: #e6e9ee; }
#adjudicationBanner { background: #2d2816; border: 1px solid #3d434d; border-left: 3px solid #f2a93b;
                      border-radius: 4px; }
#adjudicationBanner QLabel { color: #f3e3c3; }
#plotHint { color: #6b7280; font-size: 12px; background: transparent; }
#agreementPanel QHeaderView { font-size: 11px; }  /* small headers: the tables fit the dock's first width */
#plotReset { color: #c3c9d3; font-size: 11px; background: #2b3038; border: 1px solid #3d434d;
             border-radius: 3px; padding: 1px 6px; }
#plotReset:hover { border-color: #6ea8fe; }
#runDetailsPopup { background: #23272e; border: 1px solid #3d434d; }
#runDetails { font-family: monospace; font-size: 11px; border: none; }
#workerLog { font-family: monospace; font-size: 11px; }

QStatusBar { background: #1a1d22; border-top: 1px solid #2d3139; color: #a3abb8; }
QStatusBar QLabel { color: #a3abb8; padding: 0 6px; }
QStatusBar::item { border: none; }
#annotatorName { color: #e6e9ee; font-weight: 600; padding: 1px 8px; margin-right: 6px;
                 border: 1px solid #3d434d; border-radius: 4px; }
#annotatorName:hover { background: #2f3540; border-color: #6ea8fe; }
"""

_PALETTE = {
    QPalette.ColorRole.Window: "#1f2329",
    QPalette.ColorRole.WindowText: "#d8dde5",
    QPalette.ColorRole.Base: "#181b20",
    QPalette.ColorRole.AlternateBase: "#23272e",
    QPalette.ColorRole.ToolTipBase: "#2b3038",
    QPalette.ColorRole.ToolTipText: "#e6e9ee",
    QPalette.ColorRole.PlaceholderText: "#6b7280",
    QPalette.ColorRole.Text: "#d8dde5",
    QPalette.ColorRole.Button: "#2b3038",
    QPalette.ColorRole.ButtonText: "#d8dde5",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Highlight: "#34507a",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: ACCENT,
    QPalette.ColorRole.Light: "#3d434d",
    QPalette.ColorRole.Midlight: "#343a44",
    QPalette.ColorRole.Mid: "#2b3038",
    QPalette.ColorRole.Dark: "#15171b",
    QPalette.ColorRole.Shadow: "#0d0f12",
}


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in _PALETTE.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7280"))
    return palette
