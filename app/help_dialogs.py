"""Help ▸ About and Help ▸ User guide: two non-modal windows, so the guide stays open beside the
faces while you try what it says. Their text comes from core.about (the version, the licences,
the guide shipped in core/resources/user_guide.md)."""

from __future__ import annotations

import platform
from html import escape

import PySide6
from PySide6.QtCore import QUrl, qVersion
from PySide6.QtGui import QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTextBrowser, QVBoxLayout, QWidget

from core.about import DOWNLOADED_NOTE, About, about, user_guide


def about_html(facts: About) -> str:
    """The About box's text: the studio, its licence, then each bundled model's."""
    rows = []
    for weights in facts.weights:
        if weights.licence_file is not None:
            link = QUrl.fromLocalFile(str(weights.licence_file)).toString()
            licence = f"<a href='{escape(link)}'>{escape(weights.licence)}</a>"
        else:
            licence = f"{escape(weights.licence)} (not installed here)"
        source = escape(weights.source) + (f", version {escape(weights.version)}" if weights.version else "")
        rows.append(
            f"<tr><td><b>{escape(weights.name)}</b><br><span style='color:#8b94a3'>{escape(weights.use)}"
            f"<br>{source}</span></td><td style='padding-left:12px'>{licence}</td></tr>"
        )
    versions = f"Python {platform.python_version()} · Qt {qVersion()} · PySide6 {PySide6.__version__}"
    return (
        f"<h2>{escape(facts.name)} {escape(facts.version)}</h2>"
        f"<p>{escape(facts.summary)}</p>"
        f"<p>Licence: <b>{escape(facts.licence)}</b></p>"
        "<h3>Model weights it runs</h3>"
        "<table cellspacing='6'>" + "".join(rows) + "</table>"
        f"<p style='color:#8b94a3'>{escape(DOWNLOADED_NOTE)}</p>"
        f"<p style='color:#8b94a3'>{escape(versions)}</p>"
    )


HEADING_PX = {1: 20, 2: 16, 3: 14}


def space_out(document: QTextDocument) -> None:
    """Markdown as Qt renders it is tight: giant headings on the text below them and paragraphs
    without room between them. Calmer headings, space before them and after each paragraph."""
    document.setDocumentMargin(14)
    cursor = QTextCursor(document)
    block = document.begin()
    while block.isValid():
        cursor.setPosition(block.position())
        fmt = block.blockFormat()
        level = fmt.headingLevel()
        fmt.setTopMargin(14 if level else fmt.topMargin())
        fmt.setBottomMargin(6)
        cursor.setBlockFormat(fmt)
        if level in HEADING_PX:
            cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
            size = QTextCharFormat()
            size.setFontPointSize(HEADING_PX[level] * 0.75)  # px at 96 dpi
            cursor.mergeCharFormat(size)
        block = block.next()


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("About FER Studio")
        self.facts = about()
        self.browser = QTextBrowser()
        self.browser.setObjectName("aboutText")
        self.browser.setOpenExternalLinks(True)  # a licence file opens in the system's viewer
        self.browser.setHtml(about_html(self.facts))
        hint = QLabel("Click a licence to open its text.")
        hint.setObjectName("columnHeader")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(hint)
        layout.addWidget(buttons)
        self.resize(620, 520)


class UserGuideDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("FER Studio: user guide")
        self.browser = QTextBrowser()
        self.browser.setObjectName("userGuide")
        self.browser.setOpenExternalLinks(True)
        self.browser.setMarkdown(user_guide())
        space_out(self.browser.document())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)
        self.resize(720, 680)
