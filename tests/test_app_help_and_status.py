"""The window around the faces: Help ▸ About and User guide, File actions that say why they wait,
a status bar whose messages elide without moving the annotator field, file dialogs that open in
the home folder (then where the last one was), and the demo's first build shown in the window."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QStatusTipEvent
from PySide6.QtWidgets import QApplication, QMenu, QProgressDialog

from app.main_window import MainWindow
from core.about import about, bundled_weights
from core.ingest.demo import create_demo_project
from tests.test_app import SMALL_DEMO, FakeDialogs

LONG_MESSAGE = "Labeled: " + "; ".join(f"face {i}: unlabeled -> surprise" for i in range(12, 30)) + "; face 31"


class RecordingDialogs(FakeDialogs):
    """FakeDialogs that also note the folder each file dialog would open in."""

    def __init__(self):
        super().__init__()
        self.starts: list[str] = []

    def choose_folder(self, title, start=""):
        self.starts.append(start)
        return super().choose_folder(title, start)

    def choose_file(self, title, name_filter, start=""):
        self.starts.append(start)
        return super().choose_file(title, name_filter, start)


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chrome") / "demo"
    create_demo_project(root, SMALL_DEMO)[0].close()
    return root


@pytest.fixture
def dialogs():
    return RecordingDialogs()


@pytest.fixture
def window(qtbot, dialogs, demo_template, tmp_path):
    win = MainWindow(dialogs=dialogs)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    shutil.copytree(demo_template, tmp_path / "demo")
    assert win.open_project(tmp_path / "demo")
    yield win
    win.close()


def menu_titled(window, title: str) -> QMenu:
    return next(m for m in window.menuBar().findChildren(QMenu) if m.title() == title)


def test_help_about_names_the_version_and_every_licence(window):
    window.about_action.trigger()
    dialog = window.about_dialog
    assert dialog is not None and dialog.isVisible()
    text = dialog.browser.toPlainText()
    facts = about()
    assert f"FER Studio {facts.version}" in text and f"Licence: {facts.licence}" in text
    html = dialog.browser.toHtml()
    for weights in bundled_weights():
        assert weights.name in text and weights.licence in text
        assert weights.licence_file is not None and weights.licence_file.name in html  # linked
    assert "CLIP" in text  # the downloaded encoders are named as not bundled
    window.about_action.trigger()  # asked again: the same window comes forward
    assert window.about_dialog is dialog


def test_help_user_guide_shows_the_shipped_guide(window):
    window.guide_action.trigger()
    dialog = window.guide_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    text = dialog.browser.toPlainText()
    for topic in ("Open a project", "Train a model", "Review the faces", "embedding map", "Live refit"):
        assert topic in text, topic
    assert "##" not in text  # rendered, not the Markdown source


def test_file_actions_say_why_they_wait_while_a_run_trains(window, monkeypatch):
    assert menu_titled(window, "&File").toolTipsVisible()
    monkeypatch.setattr(type(window.training), "busy", property(lambda _panel: True))
    window.training.busy_changed.emit(True)
    for action in (window.new_action, window.open_action, window.demo_action, window.import_folder_action):
        assert not action.isEnabled()
        assert action.toolTip() == "Not while a run is training: cancel it in the Training dock, or let it finish"
    monkeypatch.undo()
    window.training.busy_changed.emit(False)
    assert window.open_action.isEnabled() and not window.open_action.toolTip().startswith("Not while")
    window.state.close()
    assert not window.import_folder_action.isEnabled() and window.open_action.isEnabled()
    assert window.import_folder_action.toolTip().startswith("Open a project first")


def test_a_long_message_is_elided_in_place_and_the_annotator_field_stays_put(qtbot, window):
    window.show()
    qtbot.waitExposed(window)
    QApplication.processEvents()  # the layout settles after the first show
    field, bar = window.annotator_field, window.status_bar
    where = field.geometry()
    bar.showMessage(LONG_MESSAGE, 10_000)
    QApplication.processEvents()
    assert bar.currentMessage() == LONG_MESSAGE
    shown = bar.message_label.text()
    assert shown != LONG_MESSAGE and shown.endswith("…") and bar.message_label.toolTip() == LONG_MESSAGE
    assert bar.message_label.isVisible() and field.geometry() == where
    window.counts_label.setText("a standing text far longer than the room it has " * 6)
    bar.clearMessage()
    QApplication.processEvents()
    assert window.counts_label.isVisible() and field.geometry() == where
    # An action's status tip (Qt's own route to the status bar) elides the same way.
    QCoreApplication.sendEvent(window, QStatusTipEvent(LONG_MESSAGE))
    assert bar.currentMessage() == LONG_MESSAGE and bar.message_label.toolTip() == LONG_MESSAGE
    QCoreApplication.sendEvent(window, QStatusTipEvent(""))
    assert bar.currentMessage() == "" and window.counts_label.isVisible()


def test_file_dialogs_open_in_the_home_folder_then_beside_the_last_choice(window, dialogs, tmp_path):
    dialogs.folder = None
    window.ask_import_folder()
    window.ask_open_project()
    assert dialogs.starts == [str(Path.home())] * 2
    faces = tmp_path / "photos" / "train"
    faces.mkdir(parents=True)
    dialogs.folder, dialogs.split = str(faces), None  # chosen, then the split question cancelled
    window.ask_import_folder()
    dialogs.file = str(tmp_path / "photos" / "labels.csv")
    window.ask_import_csv()
    dialogs.folder = None
    window.ask_open_project()
    assert dialogs.starts[2:] == [str(Path.home()), str((tmp_path / "photos").resolve()), str(Path.home())]
    window.ask_import_folder()
    assert dialogs.starts[-1] == str((tmp_path / "photos").resolve())


def test_the_demos_first_build_is_shown_in_the_windows_centre(qtbot, dialogs, tmp_path):
    window = MainWindow(dialogs=dialogs)
    qtbot.addWidget(window)
    window.show()
    window.open_demo_project(SMALL_DEMO, path=tmp_path / "demo")
    assert window.grid_area.currentWidget() is window.preparing and window.preparing.isVisible()
    assert not window.empty_hint.isVisible()  # "No project open" is not under it
    assert not [w for w in QApplication.topLevelWidgets() if isinstance(w, QProgressDialog) and w.isVisible()]
    assert not window.open_action.isEnabled() and "demo project" in window.open_action.toolTip()
    qtbot.waitUntil(lambda: window.state.project is not None, timeout=60_000)
    assert window.grid_area.currentWidget() is window.grid and window.open_action.isEnabled()
    assert not dialogs.errors
    window.close()
