"""The studio's predictions and model export (issue 22, part 4): the Predictions view on a
hand-made table (numeric sorting, error rows greyed and last, Save CSV), face thumbnails cut
from their files, and end to end from the window: File ▸ Predict a folder… with a corrupt file
among the photos, a worker that fails, and File ▸ Export model… to ONNX."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PIL import Image
from PySide6.QtCore import Qt

from app.export_model_dialog import MODEL_FILES, export_command
from app.predict_view import (
    SORT_ROLE,
    THUMB_SIZE,
    PredictView,
    face_image,
    predict_command,
)
from app.project_state import ProjectState
from core.classes import class_names
from core.deploy.rows import PredictedFace, PredictionTable, read_table, write_table
from core.ingest.demo import DEMO_IMAGES_DIR
from tests.studio_runs import make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

CLASSES = class_names()


class PredictDialogs(FakeDialogs):
    def __init__(self):
        super().__init__()
        self.save_path: str | None = None
        self.confirms: list[str] = []
        self.confirm_answer = True

    def choose_save_file(self, title, name_filter, start=""):
        return self.save_path

    def confirm(self, title, message):
        self.confirms.append(message)
        return self.confirm_answer


def probs(top: str, p: float) -> dict[str, float]:
    rest = round((1.0 - p) / (len(CLASSES) - 1), 6)
    return {c: (p if c == top else rest) for c in CLASSES}


def good_face(source: str, face: int, top: str, p: float, box=(10, 20, 80, 40)) -> PredictedFace:
    fused = probs(top, p)
    return PredictedFace(
        source=source,
        face=face,
        box=box,
        angle=0.0,
        predicted=top,
        confidence=p,
        passed=p >= 0.5,
        fused=fused,
        levels={"semantic": probs(top, round(p - 0.05, 6)), "text": probs(CLASSES[0], 0.4)},
    )


def hand_table(folder: Path) -> PredictionTable:
    """Three good faces (one photo with two faces), and a file that could not be read."""
    picture = folder / "group.png"
    Image.new("RGB", (200, 100), (200, 120, 90)).save(picture)
    other = folder / "single.png"
    Image.new("RGB", (200, 100), (90, 120, 200)).save(other)
    faces = [
        good_face(str(picture), 2, "happiness", 0.9),
        good_face(str(picture), 10, "sadness", 0.35),
        PredictedFace(source=str(folder / "bad.jpg"), error="cannot decode the image (not an image file)"),
        good_face(str(other), 0, "neutral", 0.6, box=(0, 0, 100, 100)),
    ]
    return PredictionTable(run_id=3, classes=CLASSES, levels=["semantic", "text"], faces=faces)


@pytest.fixture
def view(qtbot):
    state = ProjectState()
    widget = PredictView(state, PredictDialogs())
    qtbot.addWidget(widget)
    widget.resize(1200, 600)
    yield widget
    widget.shutdown()


def column_values(view: PredictView, column: int, role=Qt.ItemDataRole.DisplayRole) -> list:
    proxy = view.proxy
    return [proxy.index(row, column).data(role) for row in range(proxy.rowCount())]


def test_sorting_is_numeric_and_error_rows_stay_last_and_grey(view, tmp_path):
    view.show_table(read_table(write_table(hand_table(tmp_path), tmp_path / "table.json")), seconds=2.0)
    model = view.model
    confidence, face, problem = (model.column_of(k) for k in ("confidence", "face", "error"))
    assert view.proxy.rowCount() == 4
    assert isinstance(view.proxy.index(0, confidence).data(SORT_ROLE), float)

    view.table_view.sortByColumn(confidence, Qt.SortOrder.AscendingOrder)
    assert column_values(view, confidence) == ["0.350", "0.600", "0.900", ""]
    view.table_view.sortByColumn(confidence, Qt.SortOrder.DescendingOrder)
    assert column_values(view, confidence) == ["0.900", "0.600", "0.350", ""]  # the error row is still last
    # Face indices as numbers: 10 after 2 (as text "10" would come before "2").
    view.table_view.sortByColumn(face, Qt.SortOrder.AscendingOrder)
    assert column_values(view, face)[:3] == ["0", "2", "10"]
    happy = model.column_of("class", "happiness")
    view.table_view.sortByColumn(happy, Qt.SortOrder.DescendingOrder)
    assert column_values(view, model.column_of("predicted"))[0] == "happiness"

    last = view.proxy.rowCount() - 1
    assert view.proxy.index(last, problem).data() == "cannot decode the image (not an image file)"
    assert view.proxy.index(last, model.column_of("file")).data() == "bad.jpg"
    grey = view.proxy.index(last, model.column_of("file")).data(Qt.ItemDataRole.ForegroundRole)
    assert grey is not None and grey.name() == "#7a808a"
    good = view.proxy.index(0, model.column_of("file")).data(Qt.ItemDataRole.ForegroundRole)
    assert good is None or good.name() != "#7a808a"
    # The class colour on the prediction, each level's own pick in its column.
    happy_row = next(r for r in range(4) if view.proxy.index(r, model.column_of("predicted")).data() == "happiness")
    assert view.proxy.index(happy_row, model.column_of("predicted")).data(Qt.ItemDataRole.ForegroundRole) is not None
    assert view.proxy.index(happy_row, model.column_of("level", "semantic")).data() == "happiness"
    assert view.proxy.index(happy_row, model.column_of("level", "text")).data() == CLASSES[0]
    # The full path in the file's tooltip.
    tooltip = view.proxy.index(last, model.column_of("file")).data(Qt.ItemDataRole.ToolTipRole)
    assert str(tmp_path / "bad.jpg") in tooltip


def test_summary_line_counts_files_faces_problems_classes_run_and_time(view, tmp_path):
    assert view.save_button.isHidden() and view.pages.currentWidget() is view.hint  # nothing to save yet
    view.show_table(hand_table(tmp_path), seconds=2.0)
    assert not view.save_button.isHidden() and view.save_button.isEnabled()
    text = view.summary.text()
    assert "<b>3</b> files" in text and "<b>3</b> faces" in text and "<b>1</b> with problems" in text
    assert "run 3" in text and "2 s" in text and "1.5 faces/s" in text
    assert "happiness</span> 1" in text and "sadness</span> 1" in text and "neutral</span> 1" in text
    assert view.pages.currentWidget() is view.table_view


def test_save_csv_writes_the_table_back_equal(view, tmp_path):
    table = hand_table(tmp_path)
    view.show_table(table)
    target = tmp_path / "out" / "predictions"
    view.dialogs.save_path = str(target)  # no suffix: saved as CSV
    saved = view.ask_save()
    assert saved == target.with_suffix(".csv") and saved.is_file()
    back = read_table(saved)
    assert [f.source for f in back.faces] == [f.source for f in table.faces]
    for mine, theirs in zip(table.faces, back.faces):
        assert (theirs.face, theirs.box, theirs.predicted, theirs.confidence, theirs.passed, theirs.error) == (
            mine.face,
            mine.box,
            mine.predicted,
            mine.confidence,
            mine.passed,
            mine.error,
        )
        assert theirs.fused == mine.fused
        for level in table.levels:
            assert theirs.level_prediction(level) == mine.level_prediction(level)
    # JSON keeps everything, the run included.
    view.dialogs.save_path = str(tmp_path / "all.json")
    assert read_table(view.ask_save()) == table
    # A name that is neither: a message, no crash, nothing written.
    assert view.save(tmp_path / "table.txt") is None
    assert view.dialogs.errors and "table.txt" in view.dialogs.errors[-1][1]
    assert not (tmp_path / "table.txt").exists()


def test_thumbnails_are_cut_by_the_box_and_keep_its_shape(view, qtbot, tmp_path):
    picture = tmp_path / "wide.png"
    Image.new("RGB", (300, 200), (30, 160, 90)).save(picture)
    image = face_image(str(picture), (10, 20, 120, 60), None, THUMB_SIZE)
    assert not image.isNull() and (image.width(), image.height()) == (THUMB_SIZE, THUMB_SIZE // 2)
    turned = face_image(str(picture), (50, 50, 100, 100), 12.0, THUMB_SIZE)
    assert not turned.isNull() and turned.width() == turned.height()
    whole = face_image(str(picture), None, None, THUMB_SIZE)
    assert (whole.width(), whole.height()) == (THUMB_SIZE, round(THUMB_SIZE * 2 / 3))

    view.show_table(hand_table(tmp_path))
    model, proxy = view.model, view.proxy
    for row in range(proxy.rowCount()):
        proxy.index(row, 0).data(Qt.ItemDataRole.DecorationRole)  # asks for each row's thumbnail
    good_rows = [r for r in range(model.rowCount()) if model.face(r).error is None]
    qtbot.waitUntil(
        lambda: all(model.index(r, 0).data(Qt.ItemDataRole.DecorationRole) is not None for r in good_rows),
        timeout=10_000,
    )
    for row in good_rows:
        pixmap = model.index(row, 0).data(Qt.ItemDataRole.DecorationRole)
        _x, _y, w, h = model.face(row).box
        assert not pixmap.isNull()
        assert pixmap.width() / pixmap.height() == pytest.approx(w / h, rel=0.05)
    # The error row gets none, and its file is never opened.
    bad = next(r for r in range(model.rowCount()) if model.face(r).error)
    assert model.index(bad, 0).data(Qt.ItemDataRole.DecorationRole) is None


def test_the_worker_command_asks_for_json_events_and_the_run():
    program, args = predict_command("/p", ["/photos"], 4, "/tmp/t.json")
    assert Path(args[0]).name == "main.py" and args[1:4] == ["predict", "/p", "/photos"]
    assert args[args.index("--run") + 1] == "4" and args[args.index("--out") + 1] == "/tmp/t.json"
    assert args[-2:] == ["--events", "json"] and os.path.basename(program).startswith("python")


# -- end to end, from the window, with the real workers ------------------------------------------
WORKER_TIMEOUT_MS = 180_000  # a worker loads torch and the run


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("predict") / "demo", runs=("sitfer",))


@pytest.fixture
def trained(trained_template, tmp_path) -> Path:
    return project_copy(trained_template, tmp_path)


@pytest.fixture
def window(qtbot, trained):
    win = studio_window(qtbot, trained, PredictDialogs())
    yield win
    win.close()


def photos_folder(project_root: Path, target: Path, count: int = 4) -> list[str]:
    """A few of the demo's face images, a corrupt bad.jpg beside them; the good files' names."""
    sources = sorted((project_root / DEMO_IMAGES_DIR / "val").rglob("*.png"))[:count]
    target.mkdir(parents=True)
    for source in sources:
        shutil.copy(source, target / source.name)
    (target / "bad.jpg").write_bytes(b"\xff\xd8 this is no JPEG " + bytes(range(256)) * 8)
    return [s.name for s in sources]


def test_no_project_no_finished_run_the_actions_say_why(qtbot):
    from app.main_window import MainWindow

    win = MainWindow(dialogs=PredictDialogs())
    qtbot.addWidget(win)
    for action in (win.predict_action, win.export_model_action):
        assert not action.isEnabled() and "Open a project first" in action.toolTip()
    win.close()


def test_predict_a_folder_from_the_window(window, qtbot, tmp_path):
    dialogs, view = window.dialogs, window.predictions
    good = photos_folder(window.state.root, tmp_path / "photos")
    dialogs.folder = str(tmp_path / "photos")
    assert window.predict_action.isEnabled()
    window.predict_action.trigger()
    assert window.center_tabs.currentWidget() is view and view.running
    assert not view.progress_row.isHidden() and view.cancel_button.isEnabled()
    window.predict_action.trigger()  # a second one while the first runs: refused, said
    assert dialogs.errors and dialogs.errors[-1][0] == "Prediction running"

    qtbot.waitUntil(lambda: not view.running, timeout=WORKER_TIMEOUT_MS)
    table = view.table
    assert table is not None, view.problem_label.text()
    assert table.run_id == window.state.current_run and view.progress_row.isHidden()
    errors = [face for face in table.faces if face.error]
    assert [Path(face.source).name for face in errors] == ["bad.jpg"] and errors[0].fused is None
    predicted = [face for face in table.faces if face.ok]
    assert sorted(Path(face.source).name for face in predicted) == sorted(good)
    for face in predicted:
        assert face.predicted in CLASSES and 0 < face.confidence <= 1
        assert face.fused is not None and sum(face.fused.values()) == pytest.approx(1, abs=1e-3)
        assert face.confidence == pytest.approx(max(face.fused.values()), abs=1e-5)
    # The view: every row, the error row greyed and last by confidence, the summary, thumbnails.
    model, proxy = view.model, view.proxy
    assert proxy.rowCount() == len(good) + 1
    view.table_view.sortByColumn(model.column_of("confidence"), Qt.SortOrder.DescendingOrder)
    shown = column_values(view, model.column_of("confidence"))
    assert shown[-1] == "" and shown[:-1] == sorted(shown[:-1], reverse=True)
    assert column_values(view, model.column_of("file"))[-1] == "bad.jpg"
    assert f"<b>{len(good) + 1}</b> files" in view.summary.text() and "<b>1</b> with problems" in view.summary.text()
    for row in range(proxy.rowCount()):
        proxy.index(row, 0).data(Qt.ItemDataRole.DecorationRole)
    good_rows = [r for r in range(model.rowCount()) if model.face(r).ok]
    qtbot.waitUntil(
        lambda: all(model.index(r, 0).data(Qt.ItemDataRole.DecorationRole) is not None for r in good_rows),
        timeout=10_000,
    )
    assert not dialogs.errors[1:], dialogs.errors
    # Save CSV… writes what is shown.
    dialogs.save_path = str(tmp_path / "saved.csv")
    back = read_table(view.ask_save())
    assert [(f.source, f.predicted, f.error) for f in back.faces] == [
        (f.source, f.predicted, f.error) for f in table.faces
    ]


def test_a_failing_worker_says_why_and_the_window_lives_on(window, qtbot, tmp_path):
    view, missing = window.predictions, tmp_path / "nowhere"
    assert window.predict([str(missing)])
    qtbot.waitUntil(lambda: not view.running, timeout=WORKER_TIMEOUT_MS)
    assert view.table is None and not view.problem_label.isHidden()
    assert "nowhere" in view.problem_label.text() and "no such file or folder" in view.problem_label.text()
    assert window.dialogs.errors[-1][0] == "Prediction failed" and "nowhere" in window.dialogs.errors[-1][1]
    assert window.predict_action.isEnabled()  # and another prediction may start


def test_cancel_stops_the_worker_and_says_so(window, qtbot, tmp_path):
    view = window.predictions
    photos_folder(window.state.root, tmp_path / "photos")
    assert window.predict([str(tmp_path / "photos")])
    view.cancel_button.click()
    qtbot.waitUntil(lambda: not view.running, timeout=WORKER_TIMEOUT_MS)
    assert view.table is None and "cancelled" in view.problem_label.text()
    assert not window.dialogs.errors  # a cancel the user asked for is no error message


def test_export_model_to_onnx_from_the_window(window, qtbot, tmp_path):
    dialogs = window.dialogs
    assert window.export_model_action.isEnabled()
    window.export_model_action.trigger()
    dialog = window.export_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.run_id() == window.state.current_run and dialog.format() == "onnx"
    out = tmp_path / "exported"
    dialogs.folder = str(out)
    dialog.choose_folder()
    assert dialog.folder() == str(out) and dialog.export_button.isEnabled()
    dialog.export_button.click()
    assert dialog.running and not dialog.progress.isHidden() and not dialog.export_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.running, timeout=WORKER_TIMEOUT_MS)
    assert dialog.result_event is not None, dialog.error
    assert (out / "model.onnx").is_file() and (out / "model_card.json").is_file() and (out / "MODEL_CARD.md").is_file()
    assert str(out) in dialog.status.text() and "model.onnx" in dialog.status.text()
    assert not dialog.open_button.isHidden() and dialog.out_dir() == out
    assert not dialog.card.isHidden() and "Model card" in dialog.card.toPlainText()
    # Again into the same folder: asked first; No leaves it alone, no worker starts.
    dialogs.confirm_answer = False
    assert not dialog.export() and not dialog.running and "already holds" in dialogs.confirms[-1]
    _program, args = export_command(window.state.root, out, 1, "torchscript", force=True)
    assert args[1:4] == ["export-model", str(window.state.root), str(out)] and "--force" in args
    assert args[args.index("--format") + 1] == "torchscript" and args[-2:] == ["--events", "json"]


def test_the_dialog_knows_the_files_an_export_writes():
    from core.deploy.export import CARD_JSON, CARD_MD
    from core.deploy.export import MODEL_FILES as EXPORT_FILES

    assert set(MODEL_FILES) == {*EXPORT_FILES.values(), CARD_JSON, CARD_MD}
