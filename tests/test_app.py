"""The studio's main window, offscreen: counts, filters, thumbnails, imports, errors, first start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from core.ingest.demo import DemoSettings, create_demo_project
from core.paths import default_demo_project
from core.store.project import Project
from core.store.queries import list_faces, project_stats
from core.thumbnails import thumbnail_path
from tests.imagegen import face_like, save, write_class_folders

SMALL_DEMO = DemoSettings(train_per_class=8, val_per_class=3, labeled_per_class=2)


class FakeDialogs:
    """Answers every question at once and records what would have been shown."""

    def __init__(self):
        self.errors: list[tuple[str, str]] = []
        self.reports = []
        self.split: str | None = "train"
        self.folder: str | None = None
        self.file: str | None = None

    def error(self, title, message):
        self.errors.append((title, message))

    def choose_folder(self, title, start=""):
        return self.folder

    def choose_file(self, title, name_filter, start=""):
        return self.file

    def choose_split(self, source):
        return self.split

    def show_report(self, report):
        self.reports.append(report)


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template") / "demo"
    project, _reports = create_demo_project(root, SMALL_DEMO)
    project.close()
    return root


@pytest.fixture
def demo_path(demo_template, tmp_path) -> Path:
    """A fresh copy of the small demo project for each test (tests change it)."""
    target = tmp_path / "demo"
    shutil.copytree(demo_template, target)
    return target


def stats_of(path: Path) -> dict:
    with Project.open(path) as project, project.session() as session:
        return project_stats(session)


@pytest.fixture
def dialogs():
    return FakeDialogs()


@pytest.fixture
def window(qtbot, dialogs):
    from app.main_window import MainWindow

    win = MainWindow(dialogs=dialogs)
    qtbot.addWidget(win)
    win.resize(1000, 700)
    yield win
    win.close()


@pytest.fixture
def opened(window, demo_path):
    assert window.open_project(demo_path)
    return window


def set_combo(combo, value) -> None:
    combo.setCurrentIndex(combo.findData(value))


def test_window_shows_the_projects_counts(opened, demo_path):
    stats = stats_of(demo_path)
    assert stats["images"] == 7 * (8 + 3) and stats["hidden_truth"] == 7 * 6
    panel = opened.panel
    assert panel.name_label.full_text() == "demo"
    assert panel.path_label.full_text() == str(demo_path.resolve())
    for key in ("images", "labeled", "unlabeled", "hidden_truth"):
        assert panel.total_labels[key].text() == f"{stats[key]:,}"
    for split, counts in stats["by_split"].items():
        for key, value in counts.items():
            assert panel.split_labels[(split, key)].text() == f"{value:,}"
    for name, value in stats["by_label"].items():
        assert panel.class_labels[name].text() == f"{value:,}"
    status = opened.counts_label.full_text()
    assert f"{stats['images']} faces" in status and f"{stats['labeled']} labeled" in status
    assert f"{stats['unlabeled']} unlabeled" in status
    assert opened.path_label.full_text() == str(demo_path.resolve())
    assert "demo" in opened.windowTitle()


def test_grid_rows_follow_the_filters(opened, demo_path):
    stats = stats_of(demo_path)
    model, panel = opened.model, opened.panel
    assert model.rowCount() == stats["images"]
    set_combo(panel.split_combo, "val")
    assert model.rowCount() == stats["by_split"]["val"]["images"] == 21
    set_combo(panel.split_combo, None)
    set_combo(panel.status_combo, False)
    assert model.rowCount() == stats["unlabeled"]
    assert all(model.face(r).label is None for r in range(model.rowCount()))
    set_combo(panel.status_combo, None)
    set_combo(panel.label_combo, "happiness")
    assert model.rowCount() == stats["by_label"]["happiness"]
    assert {model.face(r).label for r in range(model.rowCount())} == {"happiness"}
    set_combo(panel.split_combo, "train")
    assert model.rowCount() == 2  # labeled_per_class
    assert "showing 2" in opened.counts_label.full_text()
    set_combo(panel.split_combo, "test")
    assert model.rowCount() == 0
    assert opened.grid_area.currentWidget() is opened.empty_hint


def test_tooltip_names_path_split_label_and_source(opened):
    model = opened.model
    row = next(r for r in range(model.rowCount()) if model.face(r).label)
    tip = model.data(model.index(row), Qt.ItemDataRole.ToolTipRole)
    face = model.face(row)
    assert face.path in tip and face.split in tip and face.label in tip and face.label_source in tip


def test_thumbnails_load_lazily_for_visible_items(qtbot, opened):
    from app.face_model import ThumbState

    opened.show()
    qtbot.waitExposed(opened)
    model = opened.model
    first = range(min(8, model.rowCount()))
    qtbot.waitUntil(lambda: all(model.thumb_state(r) == ThumbState.LOADED for r in first), timeout=10_000)
    pixmap = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert pixmap.width() == opened.loader.size and not pixmap.isNull()
    # Lazy: the last face was never on screen, so it was neither loaded nor queued.
    assert model.thumb_state(model.rowCount() - 1) == ThumbState.PENDING
    assert len(opened.loader._cache) < model.rowCount()


def test_broken_image_shows_the_error_placeholder(qtbot, demo_path, window):
    from app.face_model import ThumbState

    with Project.open(demo_path) as project:
        with project.session() as session:
            face = list_faces(session, limit=1)[0]
        project.resolve_path(face.path).write_bytes(b"this is not an image at all" * 10)
        thumbnail_path(project, face.id).unlink(missing_ok=True)
    assert window.open_project(demo_path)
    model = window.model
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: model.thumb_state(0) == ThumbState.ERROR, timeout=10_000)
    qtbot.waitUntil(lambda: model.thumb_state(1) == ThumbState.LOADED, timeout=10_000)
    placeholder = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert placeholder is model._broken_pixmap
    assert "cannot show this image" in model.data(model.index(0), Qt.ItemDataRole.ToolTipRole)
    assert window.loader.error(face.id)
    window.grid.viewport().repaint()  # painting the broken cell must not fail


def test_import_folder_updates_counts_and_grid(qtbot, opened, dialogs, tmp_path):
    before = opened.state.stats()["images"]
    source = write_class_folders(tmp_path / "new", {"happy": 3, "sad": 2}, seed0=10_000)
    (source / "happy" / "garbage.png").write_bytes(b"not a png")
    with qtbot.waitSignal(opened.importer.finished, timeout=30_000) as signal:
        assert opened.importer.start_import(source, "val")
    report = signal.args[0]
    assert report.imported == 5 and len(report.skipped) == 1
    assert "garbage.png" in report.skipped[0].path
    assert dialogs.reports == [report] and not dialogs.errors
    qtbot.waitUntil(lambda: not opened.importer.busy)
    stats = opened.state.stats()
    assert stats["images"] == before + 5
    assert opened.panel.total_labels["images"].text() == f"{before + 5:,}"
    assert opened.panel.class_labels["happiness"].text() == f"{stats['by_label']['happiness']:,}"
    assert opened.model.rowCount() == before + 5
    assert f"{before + 5} faces" in opened.counts_label.full_text()
    assert opened.import_folder_action.isEnabled()


def test_import_asks_for_the_split_and_can_be_declined(qtbot, opened, dialogs, tmp_path):
    source = tmp_path / "flat"
    for i in range(3):
        save(face_like(20_000 + i), source / f"{i}.png")
    dialogs.split = None  # the user cancels the split dialog
    assert not opened.importer.begin(source)
    dialogs.split = "test"
    with qtbot.waitSignal(opened.importer.finished, timeout=30_000):
        assert opened.importer.begin(source)
    assert opened.state.stats()["by_split"]["test"]["unlabeled"] == 3


def test_import_can_be_cancelled(qtbot, opened, monkeypatch, tmp_path):
    import app.import_flow as flow

    real = flow.import_source

    def cancel_then_import(*args, **kwargs):
        opened.importer.cancel()  # as if the user pressed Cancel right away
        return real(*args, **kwargs)

    monkeypatch.setattr(flow, "import_source", cancel_then_import)
    source = write_class_folders(tmp_path / "src", {"happy": 10}, seed0=30_000)
    before = opened.state.stats()["images"]
    with qtbot.waitSignal(opened.importer.finished, timeout=30_000) as signal:
        opened.importer.start_import(source, "train")
    assert signal.args[0].cancelled
    assert opened.state.stats()["images"] == before


def test_unusable_import_source_shows_an_error_and_keeps_working(qtbot, opened, dialogs, tmp_path):
    with qtbot.waitSignal(opened.importer.failed, timeout=30_000):
        opened.importer.start_import(tmp_path / "does-not-exist", "train")
    assert dialogs.errors and "no such file or folder" in dialogs.errors[-1][1]
    bad = write_class_folders(tmp_path / "bad", {"smiling": 1})
    with qtbot.waitSignal(opened.importer.failed, timeout=30_000):
        opened.importer.start_import(bad, "train")
    assert "smiling" in dialogs.errors[-1][1]
    qtbot.waitUntil(lambda: not opened.importer.busy)
    assert opened.state.project is not None and opened.model.rowCount() > 0


def test_dropping_a_folder_starts_the_import(qtbot, opened, dialogs, tmp_path):
    source = write_class_folders(tmp_path / "dropped", {"neutral": 2}, seed0=40_000)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(source))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(opened.importer.finished, timeout=30_000) as signal:
        opened.dropEvent(event)
    assert signal.args[0].imported == 2
    # Files that are neither folders nor CSV manifests are not accepted.
    mime.setUrls([QUrl.fromLocalFile(str(next(source.rglob("*.png"))))])
    assert (
        opened._dropped_path(
            QDropEvent(
                QPointF(1, 1), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
            )
        )
        is None
    )


def test_opening_a_non_project_folder_shows_an_error_and_keeps_the_project(opened, dialogs, demo_path, tmp_path):
    rows = opened.model.rowCount()
    (tmp_path / "plain").mkdir()
    dialogs.folder = str(tmp_path / "plain")
    opened.ask_open_project()
    assert dialogs.errors and "is not a project" in dialogs.errors[-1][1]
    assert opened.state.root == demo_path.resolve()
    assert opened.model.rowCount() == rows
    assert opened.panel.name_label.full_text() == "demo"


def test_new_project_opens_empty(opened, dialogs, tmp_path):
    dialogs.folder = str(tmp_path / "fresh")
    opened.ask_new_project()
    assert not dialogs.errors
    assert opened.state.root == (tmp_path / "fresh").resolve()
    assert opened.model.rowCount() == 0
    assert opened.grid_area.currentWidget() is opened.empty_hint
    assert "no faces yet" in opened.empty_hint.text()
    opened.ask_new_project()  # already a project now
    assert "already a project" in dialogs.errors[-1][1]


def test_recent_projects_are_remembered_and_pruned(window, demo_path, tmp_path):
    from app.settings import MAX_RECENT, recent_projects

    paths = []
    for i in range(MAX_RECENT + 2):
        Project.create(tmp_path / f"p{i}").close()
        paths.append(str((tmp_path / f"p{i}").resolve()))
        assert window.open_project(paths[-1])
    recent = recent_projects(window.settings)
    assert recent == paths[::-1][:MAX_RECENT]
    shutil.rmtree(paths[-2])
    assert paths[-2] not in recent_projects(window.settings)
    window._fill_recent_menu()
    assert [a.text() for a in window.recent_menu.actions()] == recent_projects(window.settings)


def test_layout_and_last_project_persist(qtbot, opened, demo_path, dialogs):
    from app.main_window import MainWindow
    from app.startup import resolve_startup_project

    opened.splitter.setSizes([300, 700])
    sizes = opened.splitter.sizes()
    opened.close()
    choice = resolve_startup_project(None)
    assert choice.path.resolve() == demo_path.resolve() and not choice.is_demo
    again = MainWindow(dialogs=dialogs)
    qtbot.addWidget(again)
    assert again.splitter.sizes()[0] == sizes[0]
    again.close()


def test_settings_live_in_the_studio_home(isolated_home):
    from app.settings import studio_settings

    assert Path(studio_settings().fileName()).resolve().is_relative_to(isolated_home.resolve())


def test_first_start_builds_and_opens_the_demo_project(qtbot, isolated_home, dialogs):
    from app.main import start_studio
    from app.startup import resolve_startup_project

    demo = default_demo_project()
    assert demo.resolve().is_relative_to(isolated_home.resolve())
    choice = resolve_startup_project(None)
    assert choice.is_demo and choice.needs_build and choice.path == demo
    window = start_studio(None, dialogs=dialogs, demo_settings=SMALL_DEMO)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.state.project is not None, timeout=60_000)
    assert not dialogs.errors
    assert window.state.root == demo.resolve()
    assert window.model.rowCount() == 77
    assert Project.is_project(demo)
    window.close()
    # Next start: the demo is there and is opened again, without building.
    choice = resolve_startup_project(None)
    assert choice.is_demo and not choice.needs_build


def test_a_project_named_on_the_command_line_wins(qtbot, demo_path, dialogs):
    from app.main import start_studio

    window = start_studio(str(demo_path), dialogs=dialogs)
    qtbot.addWidget(window)
    assert window.state.root == demo_path.resolve()
    window.close()


def test_thirty_thousand_faces_load_only_what_is_on_screen(qtbot, opened, monkeypatch):
    from dataclasses import replace

    from app.face_model import ThumbState

    real = opened.model.face(0)
    many = [replace(real, id=i) for i in range(1, 30_001)]  # one image file, 30,000 face ids
    monkeypatch.setattr(opened.state, "faces", lambda face_filter: many)
    requested = []
    loader_request = opened.loader._request
    monkeypatch.setattr(opened.loader, "_request", lambda face: (requested.append(face.id), loader_request(face)))
    opened.model.reload()
    opened.show()
    qtbot.waitExposed(opened)
    model = opened.model
    assert model.rowCount() == 30_000
    qtbot.waitUntil(lambda: model.thumb_state(0) == ThumbState.LOADED, timeout=10_000)
    assert 0 < len(set(requested)) < 300
    opened.grid.scrollToBottom()
    qtbot.waitUntil(lambda: model.thumb_state(29_999) == ThumbState.LOADED, timeout=10_000)
    assert len(set(requested)) < 600
