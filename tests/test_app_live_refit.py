"""Live refits in the studio: corrections trigger a refit of the current run in the warm worker,
its run replaces the current one in place (the face being labeled stays current, the map keeps
its selection), and a worker that crashes is restarted with one message, or given up on."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, Signal

from app import settings as studio
from app import warm_worker as warm
from core.store.project import Project
from core.training.events import JsonEvents
from core.training.refit import refit
from tests.studio_runs import make_demo, project_copy, studio_window
from tests.test_app import FakeDialogs

EVERY = 3
WORKER_TIMEOUT_MS = 240_000  # a loaded 2-core machine: torch's import, then a refit


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("live") / "demo", runs=("sitfer",))


@pytest.fixture
def demo(trained_template, tmp_path) -> Path:
    return project_copy(trained_template, tmp_path)


@pytest.fixture
def dialogs():
    return FakeDialogs()


def refit_settings(every: int = EVERY, pause: str = "off"):
    settings = studio.studio_settings()
    settings.setValue(studio.KEY_REFIT_EVERY, every)
    settings.setValue(studio.KEY_REFIT_PAUSE, pause)
    settings.sync()


class FakeWorker(QObject):
    """The warm worker's face towards LiveRefit, answering nothing by itself: the test finishes
    each refit (with a real refit run made in this process) and says so through job_ended."""

    job_ended = Signal(dict)
    state_changed = Signal(str)
    trouble = Signal(str, bool)

    def __init__(self):
        super().__init__()
        self.state = warm.STOPPED
        self.requests: list[dict] = []
        self.root = None

    def start(self, root):
        self.root, self.state = root, warm.READY

    def stop(self):
        self.root, self.state = None, warm.STOPPED

    def request(self, command, **fields):
        self.requests.append({"id": len(self.requests) + 1, "command": command, **fields})
        return len(self.requests)

    def finish(self, root: Path, status: str = "finished", run: int | None = None) -> int | None:
        """Answer the newest request: a real refit of its run, or a failure (of run `run`, or
        refused before a run existed)."""
        request = self.requests[-1]
        if status == "finished":
            with Project.open(root) as project:
                outcome = refit(project, request["run"], JsonEvents(io.StringIO()), steps=5)
            assert outcome.status == "finished", outcome
            run = outcome.run_id
        self.job_ended.emit(
            {
                "event": "idle",
                "id": request["id"],
                "command": "refit",
                "status": status,
                "run": run,
                "error": "" if status == "finished" else "run 1 is not finished",
            }
        )
        return run


def live_window(qtbot, root: Path, dialogs, worker=None):
    """The studio on `root` showing the review queue; with `worker`, live refits go to it."""
    window = studio_window(qtbot, root, dialogs)
    window.show()
    qtbot.waitExposed(window)
    live = window.live_refit
    if worker is not None:
        from app.live_refit import LiveRefit

        live = LiveRefit(window.state, worker, window.settings, held_by=window._refit_held_by, parent=window)
        live.set_enabled(True)
    window.show_review()
    qtbot.waitUntil(lambda: window.review.model.queue_size() > 0, timeout=30_000)
    window.review.grid.setFocus()
    return window, live


def label_faces(window, count: int) -> None:
    for _ in range(count):
        window.labeling.label("happiness")


def current_face_id(window) -> int:
    return window.review.grid.current_face().id


# -- the policy in the studio, with a fake worker --------------------------------------------------
def test_k_corrections_refit_and_the_new_run_keeps_the_face_being_labeled(qtbot, demo, dialogs):
    refit_settings()
    worker = FakeWorker()
    window, live = live_window(qtbot, demo, dialogs, worker)
    parent = window.state.current_run
    label_faces(window, EVERY - 1)
    assert worker.requests == [] and "2 new" in live.status_text()
    # The map's selection and zoom, and the face being labeled, deep in the queue.
    view = window.map_view
    low, high = np.percentile(view.data.xy, 20, axis=0), np.percentile(view.data.xy, 70, axis=0)
    selected = view.select_rect(low, high)
    window.review.grid.select_row(5)
    zoom = view.view.viewRange()
    label_faces(window, 1)
    being_labeled = current_face_id(window)
    assert worker.requests == [{"id": 1, "command": "refit", "run": parent}]
    assert "refitting" in live.status_text() and f"+{EVERY} labels" in live.status_text()

    label_faces(window, 1)  # while the refit runs: counts toward the next one
    being_labeled = current_face_id(window)
    with qtbot.waitSignal(window.review.queue_shown, timeout=30_000):
        run = worker.finish(demo)
    assert window.state.current_run == run != parent
    assert window.review.last_result.request.run_id == run
    # In place: the face being labeled is still current, selected and shown, first in the queue.
    assert current_face_id(window) == being_labeled
    assert window.review.grid.selected_ids() == [being_labeled]
    assert window.review.model.face(0).id == being_labeled
    assert window.detail.face_id == being_labeled
    assert view.data.run_id == run and view.selected == selected and view.view.viewRange() == zoom
    assert f"run {run}, +{EVERY} labels" in live.status_text() and "1 new" in live.status_text()
    assert live.pending == 1 and worker.requests[-1]["run"] == parent  # nothing new asked yet
    reason = window.detail.reason_text.text()
    if window.review.model.item_for(being_labeled) is None:  # the new ranking dropped it: say why it is here
        assert f"Kept in place while you label it: run {run}'s queue" in reason
    else:
        assert "Kept in place" not in reason and "Not in the current review queue" not in reason
    # The next K corrections refit the new run.
    label_faces(window, EVERY - 1)
    assert worker.requests[-1] == {"id": 2, "command": "refit", "run": run}


def test_only_this_studios_annotator_counts_toward_a_refit(qtbot, demo, dialogs):
    """Teammates' votes reach the views (as the team poller announces them) but not the refit
    count: their own studios refit for them, and every refit reads everyone's labels."""
    refit_settings()
    worker = FakeWorker()
    window, live = live_window(qtbot, demo, dialogs, worker)
    faces = [window.review.model.face(row).id for row in range(2 * EVERY)]
    window.state.notify_labels_changed(faces, by_team=True)
    assert live.pending == 0 and worker.requests == []
    assert not window.state.changed_by_team, "the flag holds only while the signal is delivered"
    label_faces(window, EVERY)
    assert live.in_flight is not None and live.in_flight.labels == EVERY


def test_a_face_kept_first_but_not_ranked_says_why_it_is_in_the_queue(qtbot, demo, dialogs):
    refit_settings()
    window, _live = live_window(qtbot, demo, dialogs, FakeWorker())
    model, result = window.review.model, window.review.last_result
    kept, ranked = result.items[0], result.items[1:]
    model.set_queue(ranked, result.faces, first=result.faces[kept.face_id])
    window.review.grid.select_row(0)
    window.labeling.show_current()
    assert window.detail.face_id == kept.face_id and model.item_for(kept.face_id) is None
    assert f"Kept in place while you label it: run {kept.run_id}'s queue" in window.detail.reason_text.text()
    window.review.grid.select_row(1)  # a ranked face: its own reason
    window.labeling.show_current()
    assert ranked[0].reason in window.detail.reason_text.text() and model.note_for(ranked[0].face_id) is None


def test_a_pause_refits_after_one_correction(qtbot, demo, dialogs):
    refit_settings(every=20, pause="0.3")
    worker = FakeWorker()
    window, live = live_window(qtbot, demo, dialogs, worker)
    label_faces(window, 1)
    assert worker.requests == []
    qtbot.waitUntil(lambda: len(worker.requests) == 1, timeout=10_000)
    assert live.in_flight.labels == 1


def test_refits_wait_for_a_training_run_and_a_failed_one_for_the_next_correction(qtbot, demo, dialogs, monkeypatch):
    refit_settings()
    worker = FakeWorker()
    window, live = live_window(qtbot, demo, dialogs, worker)
    monkeypatch.setattr(type(window.training), "busy", property(lambda _self: True))
    label_faces(window, EVERY)
    assert worker.requests == [] and "waiting for the training run" in live.status_text()
    monkeypatch.undo()
    qtbot.waitUntil(lambda: len(worker.requests) == 1, timeout=10_000)  # the next tick asks
    current = window.state.current_run
    worker.finish(demo, status="failed", run=current)  # it failed on the way: worth another try
    assert window.state.current_run == current and live.pending == EVERY
    assert "the refit failed: run 1 is not finished" in live.status_text()
    qtbot.wait(1500)  # ticks pass: a failed refit is not asked again by itself
    assert len(worker.requests) == 1
    label_faces(window, 1)
    assert len(worker.requests) == 2 and live.in_flight.labels == EVERY + 1


def test_a_run_the_worker_will_not_refit_is_not_asked_again(qtbot, demo, dialogs):
    refit_settings()
    worker = FakeWorker()
    window, live = live_window(qtbot, demo, dialogs, worker)
    label_faces(window, EVERY)
    worker.finish(demo, status="failed")  # refused before a run existed (say, a fine-tune run)
    label_faces(window, 2 * EVERY)
    assert len(worker.requests) == 1 and "the refit failed" in live.status_text()
    window.state.set_current_run(window.state.current_run, force=True)  # chosen again in the history
    assert len(worker.requests) == 2 and live.in_flight.labels == 3 * EVERY


def test_turning_live_refits_off_stops_the_worker_and_on_catches_up(qtbot, demo, dialogs):
    refit_settings()
    worker = FakeWorker()
    window, live = live_window(qtbot, demo, dialogs, worker)
    label_faces(window, EVERY - 1)
    live.set_enabled(False)
    assert worker.state == warm.STOPPED and live.status_text() == "model: live refits off"
    label_faces(window, 1)
    assert worker.requests == [] and window.settings.value(studio.KEY_LIVE_REFIT) == "false"
    live.set_enabled(True)
    assert worker.state == warm.READY and worker.requests[-1]["command"] == "refit"
    assert live.in_flight.labels == EVERY


def test_a_refit_finished_after_another_run_was_chosen_only_joins_the_history(qtbot, demo, dialogs):
    refit_settings()
    worker = FakeWorker()
    window, live = live_window(qtbot, demo, dialogs, worker)
    parent = window.state.current_run
    label_faces(window, EVERY)
    with Project.open(demo) as project:  # the annotator chose another run meanwhile
        chosen = refit(project, parent, JsonEvents(io.StringIO()), steps=5).run_id
    window.state.set_current_run(chosen)
    run = worker.finish(demo)
    assert window.state.current_run == chosen and live.last is None
    assert f"refit {run} of run {parent} kept in the history" in live.status_text()
    assert run in [r.id for r in window.state.runs()]


# -- the real warm worker ----------------------------------------------------------------------------
def test_the_warm_worker_refits_and_a_crash_restarts_it_with_one_message(qtbot, demo, dialogs, monkeypatch):
    monkeypatch.delenv(studio.LIVE_REFIT_ENV, raising=False)
    refit_settings()
    window, live = live_window(qtbot, demo, dialogs)
    worker = window.warm_worker
    qtbot.waitUntil(lambda: worker.state == warm.READY, timeout=WORKER_TIMEOUT_MS)
    parent = window.state.current_run
    with qtbot.waitSignal(live.refreshed, timeout=WORKER_TIMEOUT_MS) as refreshed:
        label_faces(window, EVERY)
        being_labeled = current_face_id(window)
    run = refreshed.args[0]
    assert run != parent and window.state.current_run == run
    qtbot.waitUntil(lambda: window.review.last_result.request.run_id == run, timeout=30_000)
    assert current_face_id(window) == being_labeled

    messages = []
    window.statusBar().messageChanged.connect(lambda text: text and messages.append(text))
    os.kill(worker.process.processId(), signal.SIGKILL)
    qtbot.waitUntil(lambda: worker.state == warm.STARTING, timeout=30_000)
    assert "the worker is starting" in window.refit_label.text()
    qtbot.waitUntil(lambda: worker.state == warm.READY, timeout=WORKER_TIMEOUT_MS)
    assert "the worker is starting" not in window.refit_label.text()
    crash_messages = [m for m in messages if "model worker stopped" in m]
    assert len(crash_messages) == 1 and "restarting" in crash_messages[0], messages
    assert dialogs.errors == []
    window.close()
    assert worker.state == warm.STOPPED and not worker._retiring


def test_a_worker_that_keeps_crashing_is_given_up_with_one_dialog(qtbot, demo, dialogs, monkeypatch):
    monkeypatch.delenv(studio.LIVE_REFIT_ENV, raising=False)
    monkeypatch.setattr(
        warm,
        "serve_command",
        lambda root: (sys.executable, ["-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"]),
    )
    monkeypatch.setattr(warm, "RESTART_DELAY_MS", 50)
    refit_settings()
    window = studio_window(qtbot, demo, dialogs)
    worker = window.warm_worker
    qtbot.waitUntil(lambda: worker.state == warm.GAVE_UP, timeout=60_000)
    assert len(dialogs.errors) == 1
    title, message = dialogs.errors[0]
    assert title == "Model worker stopped" and f"{warm.MAX_CRASHES} times" in message and "boom" in message
    assert "worker stopped, live refits off" in window.refit_label.text()
    qtbot.wait(500)
    assert len(dialogs.errors) == 1 and worker.process is None  # no more restarts, no more messages
