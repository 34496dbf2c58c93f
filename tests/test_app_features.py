"""The studio's workers get their share of the cores; after an import the features are computed
in the background, shown in the status bar and cancellable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.store.project import Project
from core.threads import THREADS_ENV, studio_worker_threads
from tests.imagegen import write_class_folders

WORKER_TIMEOUT_MS = 180_000
REPORT_THREADS = (
    "import json, os; print(json.dumps({'event': 'finished', "
    f"'threads': os.environ['{THREADS_ENV}'], 'omp': os.environ['OMP_NUM_THREADS']}}))"
)


def test_each_worker_gets_its_share_of_the_cores(qtbot):
    from app.worker_process import WorkerProcess

    first, second = WorkerProcess(), WorkerProcess()
    seen: dict[str, dict] = {}
    first.event.connect(lambda event: seen.setdefault("first", event))
    second.event.connect(lambda event: seen.setdefault("second", event))
    # The first sleeps a moment so that both run at once.
    first.start(sys.executable, ["-c", "import time; time.sleep(2); " + REPORT_THREADS])
    with qtbot.waitSignal(second.ended, timeout=60_000):
        second.start(sys.executable, ["-c", REPORT_THREADS])
    qtbot.waitUntil(lambda: not first.running, timeout=60_000)
    assert seen["first"]["threads"] == seen["first"]["omp"] == str(studio_worker_threads(1))
    assert seen["second"]["threads"] == seen["second"]["omp"] == str(studio_worker_threads(2))
    assert not WorkerProcess._running


class Dialogs:
    def __init__(self):
        self.reports, self.errors = [], []

    def choose_split(self, source):
        return "train"

    def show_report(self, report):
        self.reports.append(report)

    def error(self, title, message):
        self.errors.append((title, message))


@pytest.fixture
def controller(qtbot, tmp_path):
    from app.import_flow import ImportController
    from app.project_state import ProjectState

    state = ProjectState()
    Project.create(tmp_path / "proj").close()
    state.open(tmp_path / "proj")
    importer = ImportController(state, Dialogs(), show_progress=False)
    yield importer
    importer.features.shutdown()
    state.close()


def test_an_import_computes_the_features_in_the_background(qtbot, controller, tmp_path):
    from app.feature_job import FeatureJobBar

    bar = FeatureJobBar(controller.features)
    qtbot.addWidget(bar)
    assert bar.isHidden()  # nothing going: nothing shown
    source = write_class_folders(tmp_path / "src", {"happy": 6, "sad": 6})
    with qtbot.waitSignal(controller.features.ended, timeout=WORKER_TIMEOUT_MS) as ended:
        with qtbot.waitSignal(controller.finished, timeout=60_000):
            assert controller.start_import(source, "train")
        assert controller.features.running and not bar.isHidden()
        assert bar.cancel_button.isVisibleTo(bar)
    assert ended.args[0].status == "finished", ended.args[0].error
    assert bar.label.text().startswith("Features ready (12 faces, ")
    assert not bar.cancel_button.isVisibleTo(bar) and not bar.isHidden()
    assert list(Path(controller.state.root, "features").rglob("shard_*.npz"))


def test_the_feature_job_can_be_cancelled(qtbot, controller, tmp_path):
    source = write_class_folders(tmp_path / "src", {"happy": 150, "sad": 150})
    job = controller.features
    with qtbot.waitSignal(controller.finished, timeout=60_000):
        controller.start_import(source, "train")
    qtbot.waitUntil(lambda: job.step > 0, timeout=WORKER_TIMEOUT_MS)  # the first batch is done
    with qtbot.waitSignal(job.ended, timeout=60_000) as ended:
        job.cancel()
    assert ended.args[0].status == "cancelled"
    assert job.text == "Features stopped: training computes the rest"


def test_opening_another_project_stops_the_job(qtbot, controller, tmp_path):
    source = write_class_folders(tmp_path / "src", {"happy": 150, "sad": 150})
    job = controller.features
    with qtbot.waitSignal(controller.finished, timeout=60_000):
        controller.start_import(source, "train")
    assert job.running
    Project.create(tmp_path / "other").close()
    with qtbot.waitSignal(job.ended, timeout=60_000) as ended:
        controller.state.open(tmp_path / "other")
    assert ended.args[0].status in ("cancelled", "finished")
