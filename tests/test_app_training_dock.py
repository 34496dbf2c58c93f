"""The training dock as a user meets it: plots that wait plainly and leave the wheel to the dock's
scroll area, step ticks that are whole numbers with room for their labels, a runs table whose
status always reads whole, and a run status said in one plain line with the technical record
on demand."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QScrollArea

from app.run_history import COLUMNS
from app.run_plots import ABSENT_HINT, EMPTY_HINT, RunCurves, SparseAxis
from core.store.models import RUN_CANCELLED, RUN_FAILED, RUN_FINISHED, RUN_RUNNING, Metric, Run
from core.store.project import Project
from tests.studio_runs import make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

WORKER_TIMEOUT_MS = 60_000
ENCODER_DESCRIPTION = (
    "encoder: offline: EfficientNet-Lite0 ImageNet weights (efficientnet_lite0.pth, sha256 verified) at 224 px, "
    "first 11 of 16 blocks pooled on a 3x3 grid, 1008-d"
)


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("dock") / "demo")


@pytest.fixture
def demo(demo_template, tmp_path) -> Path:
    return project_copy(demo_template, tmp_path)


def add_runs(root: Path, statuses: tuple[str, ...], encoder: str = "clip:ViT-B-32:openai") -> list[int]:
    """Runs in the project's store as a worker leaves them (no worker needed to show them)."""
    start = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    with Project.open(root) as project, project.session() as session:
        runs = [
            Run(
                algorithm="sitfer",
                encoder=encoder,
                mode="head",
                status=status,
                started_at=start,
                finished_at=None if status == RUN_RUNNING else start + timedelta(seconds=125),
            )
            for status in statuses
        ]
        session.add_all(runs)
        session.flush()
        session.add_all(Metric(run_id=run.id, step=600, name="val_accuracy", value=0.8123) for run in runs)
        session.commit()
        return [run.id for run in runs]


def wheel(widget, ctrl: bool = False, up: bool = False) -> None:
    """A mouse wheel notch over the middle of `widget`, through the window system as a mouse's
    would come (Qt hands only such a wheel event on to the parents when a widget ignores it)."""
    top = widget.window()
    middle = widget.mapTo(top, QPoint(widget.width() // 2, widget.height() // 2))
    modifier = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    QTest.wheelEvent(top.windowHandle(), QPointF(middle), QPoint(0, 120 if up else -120), QPoint(0, 0), modifier)
    QApplication.processEvents()


def shown_range(plot) -> list[list[float]]:
    """The plot's view range as drawn: pyqtgraph fits its auto range when it paints, and once
    more after the axes have made room for their labels."""
    drawn: list[list[float]] = []
    for _ in range(5):
        plot.widget.grab()
        QApplication.processEvents()
        if plot.view.viewRange() == drawn:
            break
        drawn = plot.view.viewRange()
    return drawn


# -- the plots ---------------------------------------------------------------------------------------
def test_an_empty_plot_shows_no_made_up_axes_but_what_it_waits_for(qtbot):
    curves = RunCurves()
    qtbot.addWidget(curves)
    curves.resize(420, 320)
    curves.show()
    for plot in curves.plots():
        assert not plot.item.getAxis("left").isVisible() and not plot.item.getAxis("bottom").isVisible()
        assert plot.hint.isVisible() and plot.hint.text() == EMPTY_HINT
    curves.show_series({"loss_sup": (np.array([10, 20, 30]), np.array([1.5, 1.0, 0.7]))})  # a supervised run
    assert curves.losses.item.getAxis("bottom").isVisible() and not curves.losses.hint.isVisible()
    assert curves.mask_rate.hint.isVisible() and curves.mask_rate.hint.text() == ABSENT_HINT
    assert not curves.mask_rate.item.getAxis("left").isVisible()
    curves.clear()
    assert curves.losses.hint.isVisible() and not curves.losses.item.getAxis("bottom").isVisible()


def test_step_ticks_are_whole_numbers_with_room_for_their_labels(qtbot):
    axis = SparseAxis("bottom", whole=True)
    # One step's worth of range (an early live run): no 19.6 / 19.8 / 20.0 run together.
    levels = axis.tickValues(19.5, 20.5, 150)
    values = [value for _spacing, level in levels for value in level]
    assert values == [20.0] and axis.tickStrings(values, 1.0, 1.0) == ["20"]
    # A long run on a small plot: few ticks, each label narrower than the gap to the next.
    for span, pixels in ((600, 160), (20_000, 160), (37, 300), (3, 400)):
        [(spacing, ticks)] = axis.tickValues(0, span, pixels)
        assert spacing >= 1 and all(float(t).is_integer() for t in ticks) and len(ticks) >= 2
        widest = max(axis._metrics.horizontalAdvance(label) for label in axis.tickStrings(ticks, 1.0, spacing))
        assert spacing / span * pixels > widest, (span, pixels, spacing)


def test_the_wheel_over_a_plot_scrolls_the_dock_and_ctrl_wheel_zooms_with_a_way_back(qtbot):
    curves = RunCurves()
    curves.setMinimumHeight(900)  # taller than the scroll area: the dock scrolls
    area = QScrollArea()
    qtbot.addWidget(area)
    area.setWidgetResizable(True)
    area.setWidget(curves)
    area.resize(440, 300)
    area.show()
    qtbot.waitExposed(area)
    steps = np.arange(10, 610, 10)
    curves.show_series({"loss_sup": (steps, np.linspace(2.0, 0.2, len(steps)))})
    plot = curves.losses
    whole = shown_range(plot)
    bar = area.verticalScrollBar()
    assert bar.value() == 0 and bar.maximum() > 0

    wheel(plot.widget.viewport())  # scrolling down with the pointer over the plot
    assert bar.value() > 0, "the wheel should scroll the dock"
    assert shown_range(plot) == whole and not plot.reset_button.isVisible()

    wheel(plot.widget.viewport(), ctrl=True, up=True)  # Ctrl+wheel zooms in
    zoomed = shown_range(plot)
    assert zoomed[0][1] - zoomed[0][0] < whole[0][1] - whole[0][0]
    assert plot.reset_button.isVisible() and "double-click" in plot.reset_button.toolTip()
    curves.show_series({"loss_sup": (steps, np.linspace(2.0, 0.2, len(steps)))})  # new values keep no zoom
    wheel(plot.widget.viewport(), ctrl=True, up=True)
    qtbot.mouseClick(plot.reset_button, Qt.MouseButton.LeftButton)
    assert np.allclose(shown_range(plot), whole) and not plot.reset_button.isVisible()

    wheel(plot.widget.viewport(), ctrl=True, up=True)
    qtbot.mouseDClick(plot.widget.viewport(), Qt.MouseButton.LeftButton)
    assert np.allclose(shown_range(plot), whole) and not plot.reset_button.isVisible()


def test_a_fixed_range_plot_goes_back_to_its_whole_range(qtbot):
    curves = RunCurves()
    qtbot.addWidget(curves)
    curves.resize(420, 320)
    curves.show()
    qtbot.waitExposed(curves)
    curves.show_series({"val_accuracy": (np.array([10, 20, 30]), np.array([0.4, 0.6, 0.7]))})
    plot = curves.accuracy
    low, high = shown_range(plot)[1]
    wheel(plot.widget.viewport(), ctrl=True, up=True)
    zoomed = shown_range(plot)[1]
    assert zoomed[1] - zoomed[0] < high - low
    plot.reset_button.click()
    assert np.allclose(shown_range(plot)[1], (low, high)) and low < 0 < 1 < high


# -- the runs table ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dock_width", [None, 0], ids=["default dock", "narrowest dock"])
def test_every_run_status_reads_whole_in_the_runs_table(qtbot, demo, dock_width):
    add_runs(demo, (RUN_FINISHED, RUN_CANCELLED, RUN_FAILED, RUN_RUNNING), encoder="offline")
    window = studio_window(qtbot, demo, FakeDialogs(), size=(1280, 720))
    window.show()
    qtbot.waitExposed(window)
    window.training_dock.raise_()
    view = window.training.history
    window.training.tabs.setCurrentWidget(view)
    # The user widens the dock and narrows it again (a stretched column kept its wide size).
    window.resizeDocks([window.training_dock], [900], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: view.viewport().width() > 600)
    window.resizeDocks([window.training_dock], [420 if dock_width is None else dock_width], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: view.viewport().width() < 420)
    column = COLUMNS.index("Status")
    metrics = view.fontMetrics()
    widest = max(
        metrics.horizontalAdvance(view.model().index(row, column).data()) for row in range(view.model().rowCount())
    )
    assert view.columnWidth(column) >= widest + 6  # the text and the cell's margins
    assert view.columnViewportPosition(column) + view.columnWidth(column) <= view.viewport().width()
    window.close()


# -- the run status ------------------------------------------------------------------------------------
def test_the_run_status_is_one_plain_line_and_the_details_keep_the_technical_record(qtbot, demo, monkeypatch):
    import app.worker_process as worker_process

    [run_id] = add_runs(demo, (RUN_FINISHED,), encoder="offline")
    events = [
        {
            "event": "started",
            "run": run_id,
            "algorithm": "sitfer",
            "encoder": "offline",
            "mode": "head",
            "steps": 600,
            "message": f"run {run_id}: sitfer on offline (head mode), 600 steps",
        },
        {"event": "info", "message": ENCODER_DESCRIPTION},
        {
            "event": "finished",
            "run": run_id,
            "metrics": {"val_accuracy": 0.7912, "val_fused_accuracy": 0.8143},
            "message": f"run {run_id} finished: val_accuracy 0.791, val_fused_accuracy 0.814",
        },
    ]
    code = "".join(f"print({json.dumps(json.dumps(event))}, flush=True); " for event in events)
    monkeypatch.setattr(worker_process, "worker_command", lambda root, settings: (sys.executable, ["-c", code]))
    window = studio_window(qtbot, demo, FakeDialogs())
    panel = window.training
    assert not panel.run_status.toggle.isVisibleTo(panel)  # nothing technical to show before a run
    with qtbot.waitSignal(panel.worker.ended, timeout=WORKER_TIMEOUT_MS):
        assert panel.start()
    line = panel.status.text()
    assert line == f"Run {run_id} finished: SIT-FER on the offline encoder, 600 steps, val accuracy 81%"
    assert "sha256" not in line and panel.status.property("runState") == "finished"
    popup = panel.run_status.popup
    assert not popup.isVisible() and panel.run_status.toggle.isVisibleTo(panel)
    panel.run_status.toggle.click()
    assert popup.isVisible() and panel.run_status.details.isReadOnly()
    popup.hide()
    record = panel.run_status.details_text()
    assert ENCODER_DESCRIPTION in record and "val_fused_accuracy 0.814" in record
    assert "sha256 verified" in panel.status.toolTip()
    window.close()


def test_a_crash_says_its_exception_in_the_line_and_its_traceback_in_the_details(qtbot, demo, monkeypatch):
    import app.worker_process as worker_process

    code = (
        'import sys; sys.stderr.write(\'Traceback (most recent call last):\\n  File "x.py", line 3, in <module>\\n'
        "RuntimeError: boom\\n'); sys.exit(1)"
    )
    monkeypatch.setattr(worker_process, "worker_command", lambda root, settings: (sys.executable, ["-c", code]))
    window = studio_window(qtbot, demo, FakeDialogs())
    panel = window.training
    with qtbot.waitSignal(panel.worker.ended, timeout=WORKER_TIMEOUT_MS):
        assert panel.start()
    assert panel.status.text() == "The run failed: the worker exited with code 1: RuntimeError: boom"
    assert 'File "x.py", line 3' in panel.run_status.details_text()
    window.close()


# -- the form ------------------------------------------------------------------------------------------
def test_the_form_has_one_box_per_switch_and_none_left_over_its_fields(qtbot):
    from PySide6.QtWidgets import QCheckBox

    from app.training_form import TrainingForm
    from core.encoders import offered_encoders

    form = TrainingForm()
    qtbot.addWidget(form)
    form.show()
    boxes = form.findChildren(QCheckBox)
    assert sorted(map(id, boxes)) == sorted(map(id, [*form.switches.values(), form.geometry_box, form.soft_labels_box]))
    # The encoder list offers what users can pick: no test encoder.
    listed = [form.encoder.itemText(i) for i in range(form.encoder.count())]
    assert listed == offered_encoders() and not any("tiny" in name for name in listed)
