"""The Agreement dock: how far the annotators' votes agree (core/team/agreement.py).

Krippendorff's alpha and Fleiss' kappa with their bands in words, a per-class table, a table of
annotators against the consensus (accuracy, Cohen's kappa) with the chosen annotator's
confusion as a small heat table, and the class pairs confused most. Counted off the GUI thread
(about a second for 100,000 faces with two votes each); again after corrections pause, or when
the dock is next shown if it is hidden meanwhile.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.background import NewestJobRunner
from app.project_state import ProjectState
from app.style import ACCENT
from app.widgets import dot_icon, empty_hint
from core.classes import expression_classes
from core.store.models import SPLITS
from core.team.agreement import AgreementReport, AnnotatorAgreement
from core.team.project_agreement import ALL_SPLITS
from core.team.reliability import alpha_band, kappa_band

REFRESH_DELAY_MS = 1000  # after the last correction: one count per pause, not one per key
HEAT_LOW = QColor("#181b20")  # the tables' base colour: an empty cell
HEAT_HIGH = QColor(ACCENT)
# Each column's header and what it means (the header's tooltip): narrow headers, so the tables fit
# the dock's first width.
CLASS_COLUMNS = {
    "Class": "",
    "Votes": "votes for this class",
    "Share": "of all votes",
    "Labels": "faces with votes whose label (the consensus) is this class",
    "Kappa": "Fleiss' kappa of this class (per-category kappa)",
    "α vs rest": "Krippendorff's alpha of 'this class or another'",
}
ANNOTATOR_COLUMNS = {
    "Annotator": "",
    "Voted": "faces this annotator voted a class on",
    "Compared": "of those, faces someone else voted on too (and with a label): accuracy and kappa are over these",
    "Accuracy": "their class is the label, of the faces compared",
    "+ sole": "accuracy with the faces only they voted on added (their own vote decided those)",
    "Kappa": "Cohen's kappa against the consensus, over the faces compared",
    "Adj.": "adjudications: their final word on disputed faces (not counted as votes unless ticked above)",
}
PAIR_COLUMNS = {
    "Classes": "",
    "Pairs": "pairs of votes on one face, one for each class",
    "Share": "of all pairs of votes that differ",
}
NO_PROJECT = "Open a project to see how far its annotators agree."
NO_VOTES = (
    "No votes yet.\n\nEach annotator's label of a face is a vote, recorded under the name in the "
    "status bar (Review ▸ Change annotator…). Once two annotators have labeled the same faces, "
    "their agreement appears here.\n\nFrom a terminal: python main.py agreement PROJECT"
)


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def heat(share: float) -> QColor:
    """The base colour blended towards the accent by `share` (0..1)."""
    share = min(max(share, 0.0), 1.0)
    low = (HEAT_LOW.redF(), HEAT_LOW.greenF(), HEAT_LOW.blueF())
    high = (HEAT_HIGH.redF(), HEAT_HIGH.greenF(), HEAT_HIGH.blueF())
    red, green, blue = ((1 - share) * a + share * b for a, b in zip(low, high, strict=True))
    return QColor.fromRgbF(red, green, blue)


class AgreementPanel(QWidget):
    def __init__(self, state: ProjectState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("agreementPanel")
        self.state = state
        self.report: AgreementReport | None = None
        self.runner = NewestJobRunner(self)
        self.runner.succeeded.connect(self._counted)
        self.runner.failed.connect(self._failed)
        self._stale = False  # labels changed while the dock was hidden

        self.split_combo = QComboBox()
        self.split_combo.addItem("All splits", ALL_SPLITS)
        for split in SPLITS:
            self.split_combo.addItem(split, split)
        self.adjudicated_box = QCheckBox("Count adjudications")
        self.adjudicated_box.setToolTip(
            "By default an adjudication is the final word on a disputed face, not one more vote: "
            "counting it as a vote would raise the agreement on exactly the faces that were disputed."
        )
        self.progress = QLabel()
        self.progress.setObjectName("plotHint")
        bar = QHBoxLayout()
        bar.addWidget(self.split_combo)
        bar.addWidget(self.adjudicated_box)
        bar.addStretch(1)
        bar.addWidget(self.progress)

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.class_table = _table(CLASS_COLUMNS)
        self.annotator_table = _table(ANNOTATOR_COLUMNS)
        self.annotator_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.annotator_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.confusion_title = QLabel()
        self.confusion_title.setWordWrap(True)
        self.confusion_table = _table({})
        self.pair_table = _table(PAIR_COLUMNS)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setObjectName("plotHint")

        report_page = QWidget()
        body = QVBoxLayout(report_page)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.summary)
        for title, widget in (
            ("PER CLASS", self.class_table),
            ("EACH ANNOTATOR AGAINST THE CONSENSUS", self.annotator_table),
        ):
            body.addWidget(_section(title))
            body.addWidget(widget)
        body.addWidget(self.confusion_title)
        body.addWidget(self.confusion_table)
        body.addWidget(_section("CLASS PAIRS CONFUSED MOST"))
        body.addWidget(self.pair_table)
        body.addWidget(self.notes)
        body.addStretch(1)
        self.empty = empty_hint()
        self.pages = QStackedWidget()
        self.pages.addWidget(report_page)
        self.pages.addWidget(self.empty)
        self.report_page = report_page

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(bar)
        layout.addWidget(self.pages, 1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_DELAY_MS)
        self._timer.timeout.connect(self._labels_paused)
        self.split_combo.currentIndexChanged.connect(self.refresh)
        self.adjudicated_box.toggled.connect(self.refresh)
        self.annotator_table.itemSelectionChanged.connect(self._show_confusion)
        state.project_changed.connect(self.refresh)
        state.contents_changed.connect(self.refresh)
        state.labels_changed.connect(lambda _ids: self._timer.start())
        self.refresh()

    # -- counting ------------------------------------------------------------------------------
    def request(self) -> tuple:
        """What the report shown should answer: the project, the split, adjudications counted."""
        return (self.state.project, self.split_combo.currentData(), self.adjudicated_box.isChecked())

    def refresh(self, *_args) -> None:
        api = self.state.api
        if api is None:
            self.report = None
            self.runner.cancel_pending()
            self._show_empty(NO_PROJECT)
            return
        tag = self.request()
        _project, split, counted = tag
        self.progress.setText("counting…")
        self.runner.request(lambda _progress: api.team.agreement(split, count_adjudicated=counted), tag)

    def _labels_paused(self) -> None:
        if self.isVisible():
            self.refresh()
        else:
            self._stale = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._stale = False
            self.refresh()

    def _counted(self, tag, report: AgreementReport) -> None:
        if tag != self.request():
            return  # the project or the choices changed while it counted
        self.progress.setText("")
        self.show_report(report)

    def _failed(self, tag, exc: BaseException) -> None:
        if tag == self.request():
            self.progress.setText("")
            self._show_empty(f"The votes could not be read: {exc}")

    def shutdown(self) -> None:
        self.runner.wait()

    # -- showing -------------------------------------------------------------------------------
    def show_report(self, report: AgreementReport) -> None:
        chosen = self.chosen_annotator()
        self.report = report
        if report.faces_with_votes == 0:
            self._show_empty(NO_VOTES)
            return
        self.pages.setCurrentWidget(self.report_page)
        self.summary.setText(summary_html(report))
        self._fill_classes(report)
        self._fill_annotators(report, chosen)
        self._fill_pairs(report)
        self.notes.setText("\n".join(f"Note: {note}" for note in report.notes))
        self.notes.setVisible(bool(report.notes))

    def chosen_annotator(self) -> str | None:
        rows = self.annotator_table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.annotator_table.item(rows[0].row(), 0)
        return item.text() if item is not None else None

    def _show_empty(self, text: str) -> None:
        self.empty.setText(text)
        self.pages.setCurrentWidget(self.empty)
        self.progress.setText("")

    def _fill_classes(self, report: AgreementReport) -> None:
        table = self.class_table
        table.setRowCount(len(report.per_class))
        colours = {c.name: c.color for c in expression_classes()}
        for row, c in enumerate(report.per_class):
            name = QTableWidgetItem(c.name)
            if c.name in colours:
                name.setIcon(dot_icon(colours[c.name]))
            cells = [
                name,
                _cell(str(c.votes)),
                _cell(percent(c.share)),
                _cell(str(c.consensus_faces)),
                _cell(number(c.fleiss_kappa)),
                _cell(number(c.alpha_vs_rest)),
            ]
            for column, item in enumerate(cells):
                item.setToolTip(c.note or "")
                table.setItem(row, column, item)
        _fit(table)

    def _fill_annotators(self, report: AgreementReport, chosen: str | None) -> None:
        table = self.annotator_table
        table.blockSignals(True)
        table.clearSelection()
        table.setRowCount(len(report.annotators))
        for row, a in enumerate(report.annotators):
            cells = [
                QTableWidgetItem(a.name),
                _cell(str(a.faces_voted)),
                _cell(str(a.faces_compared)),
                _cell(percent(a.accuracy)),
                _cell(percent(a.accuracy_with_sole_votes)),
                _cell(number(a.cohen_kappa)),
                _cell(str(a.adjudicated)),
            ]
            cells[3].setToolTip(
                f"{a.agreed} of the {a.faces_compared} faces someone else voted on too carry {a.name}'s class"
            )
            cells[4].setToolTip(f"with the {a.sole_votes} faces only {a.name} voted on (their vote decided them)")
            for column, item in enumerate(cells):
                table.setItem(row, column, item)
        _fit(table)
        names = [a.name for a in report.annotators]
        # The one chosen before stays chosen; else whoever was compared on the most faces.
        keep = chosen if chosen in names else max(report.annotators, key=lambda a: a.faces_compared).name
        table.selectRow(names.index(keep))
        table.blockSignals(False)
        self._show_confusion()

    def _show_confusion(self) -> None:
        report, name = self.report, self.chosen_annotator()
        person = next((a for a in report.annotators if a.name == name), None) if report else None
        if report is None or person is None:
            self.confusion_title.setText("")
            self.confusion_table.setVisible(False)
            return
        self.confusion_table.setVisible(True)
        fill_confusion(self.confusion_table, person, report.classes)
        self.confusion_title.setText(
            f"{html.escape(person.name)}'s votes (rows) against the consensus (columns), "
            f"{person.faces_compared} faces compared; darker: fewer"
        )

    def _fill_pairs(self, report: AgreementReport) -> None:
        table = self.pair_table
        table.setRowCount(len(report.confused_pairs) or 1)
        if not report.confused_pairs:
            table.setSpan(0, 0, 1, len(PAIR_COLUMNS))
            table.setItem(0, 0, QTableWidgetItem("none: no two votes on a face differ"))
        else:
            table.clearSpans()
        for row, pair in enumerate(report.confused_pairs):
            table.setItem(row, 0, QTableWidgetItem(f"{pair.classes[0]} / {pair.classes[1]}"))
            table.setItem(row, 1, _cell(str(pair.count)))
            table.setItem(row, 2, _cell(percent(pair.share)))
        _fit(table)


def summary_html(report: AgreementReport) -> str:
    alpha, kappa = report.krippendorff_alpha, report.fleiss_kappa
    counted = "counted as votes" if report.count_adjudicated else "not counted as votes"
    return (
        f"<p style='font-size:15px'><b>Krippendorff's alpha {number(alpha)}</b> · {alpha_band(alpha)}"
        f"<br><b>Fleiss' kappa {number(kappa)}</b> · {kappa_band(kappa)} agreement</p>"
        f"<p>{report.faces_with_votes:,} faces with votes, {report.faces_with_2plus_votes:,} of them voted on by "
        f"two or more annotators ({report.faces_disagreeing:,} disagree); {report.votes:,} votes from "
        f"{report.annotator_count} annotators, {number(report.mean_votes_per_face, 2)} per face; "
        f"{report.adjudicated_votes:,} adjudications ({counted}).</p>"
        "<p style='color:#8b94a3'>Alpha: rely on 0.800 and above, draw tentative conclusions from 0.667 "
        "(Krippendorff). Kappa: 0.41-0.60 moderate, 0.61-0.80 substantial, above 0.80 almost perfect "
        "(Landis &amp; Koch).</p>"
    )


def fill_confusion(table: QTableWidget, person: AnnotatorAgreement, classes: list[str]) -> None:
    """The confusion as a heat table: each cell's shade is its share of the row (their votes for
    that class), so a row that is dark but for its diagonal is an annotator the consensus follows."""
    table.clear()
    table.setRowCount(len(classes))
    table.setColumnCount(len(classes))
    table.setHorizontalHeaderLabels([name[:4] for name in classes])
    table.setVerticalHeaderLabels(classes)
    table.verticalHeader().setVisible(True)
    for row, counts in enumerate(person.confusion):
        total = sum(counts)
        for column, count in enumerate(counts):
            item = _cell(str(count) if count else "")
            item.setBackground(heat(count / total if total else 0.0))
            share = f" ({100 * count / total:.0f}% of their {classes[row]} votes)" if total else ""
            item.setToolTip(f"{person.name} voted {classes[row]}, the label is {classes[column]}: {count}{share}")
            table.setItem(row, column, item)
    for column, name in enumerate(classes):
        header = table.horizontalHeaderItem(column)
        if header is not None:
            header.setToolTip(f"the label is {name}")
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    _fit(table)


def _table(columns: dict[str, str]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    if columns:
        table.setHorizontalHeaderLabels(list(columns))
        for column, tip in enumerate(columns.values()):
            title = table.horizontalHeaderItem(column)
            if title is not None and tip:
                title.setToolTip(tip)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    if columns:
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the names take the room left
    return table


def _cell(text: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _fit(table: QTableWidget) -> None:
    """Tall enough for every row: the dock scrolls, not each table inside it."""
    table.resizeRowsToContents()
    header = table.horizontalHeader()
    rows = table.verticalHeader().length()
    table.setFixedHeight(header.sizeHint().height() + rows + 2 * table.frameWidth())
    # Never narrower than its columns: a narrow dock scrolls sideways as a whole, no table hides a column.
    columns = sum(max(table.sizeHintForColumn(c), header.sectionSizeHint(c)) for c in range(table.columnCount()))
    side = table.verticalHeader().sizeHint().width() if table.verticalHeader().isVisible() else 0
    table.setMinimumWidth(columns + side + 2 * table.frameWidth())


def _section(title: str) -> QLabel:
    label = QLabel(title)
    label.setObjectName("sectionTitle")
    return label
