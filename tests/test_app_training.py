"""Training from the studio: the worker runs as its own process and is followed through its JSON
events; finished, cancelled and failed runs end visibly; the history and the map follow."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from core.cli import build_parser
from core.cli.train_cmds import settings_from_args, train_argv
from core.ssl.algorithms import MethodConfig
from core.store.models import Run
from core.store.project import Project
from core.training.events import PHASES, JsonEvents
from core.training.loop import LoopConfig
from core.training.settings import TrainSettings
from core.training.worker import train
from tests.studio_runs import FACES, SMALL_DEMO, make_demo, project_copy, quick_settings, studio_window
from tests.test_app import FakeDialogs

WORKER_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("training") / "demo")


@pytest.fixture
def demo(demo_template, tmp_path) -> Path:
    return project_copy(demo_template, tmp_path)


@pytest.fixture
def dialogs():
    return FakeDialogs()


@pytest.fixture
def window(qtbot, dialogs, demo):
    win = studio_window(qtbot, demo, dialogs)
    win.training_dock.raise_()
    yield win
    win.close()


def quick_form(panel, steps: int = 30, encoder: str = "tiny") -> None:
    panel.form.set_values(encoder=encoder, steps=steps, batch_size=16, projection="pca")


def fake_worker(monkeypatch, code: str) -> None:
    """The panel launches `python -c code` instead of the real worker."""
    import app.worker_process as worker_process

    monkeypatch.setattr(worker_process, "worker_command", lambda root, settings: (sys.executable, ["-c", code]))


def run_to_end(qtbot, panel):
    """Start and wait for the end; the panel has handled it (and told ProjectState) by then."""
    with qtbot.waitSignal(panel.worker.ended, timeout=WORKER_TIMEOUT_MS) as ended:
        assert panel.start()
    return ended.args[0]


# -- the event stream, without a process -----------------------------------------------------------
def test_json_lines_are_parsed_across_split_reads_and_junk_is_text():
    from app.worker_process import JsonLineBuffer

    buffer = JsonLineBuffer()
    chunks = [
        b'{"event": "sta',
        b'rted", "run": 4}\n{"event": "progress", "step": 1,',
        b' "total": 2}\n',
        b"plain text from a library\n{not json}\n[1, 2]\n",
        b'{"no_event": 1}\n\n',
        '{"event": "info", "message": "caf\u00e9"}\n'.encode()[:-6],
        '{"event": "info", "message": "caf\u00e9"}\n'.encode()[-6:],
        b'{"event": "finished", "run": 4}',
    ]  # the last line has no newline
    items = [item for chunk in chunks for item in buffer.feed(chunk)] + buffer.flush()
    assert items == [
        ("event", {"event": "started", "run": 4}),
        ("event", {"event": "progress", "step": 1, "total": 2}),
        ("text", "plain text from a library"),
        ("text", "{not json}"),
        ("text", "[1, 2]"),
        ("text", '{"no_event": 1}'),
        ("event", {"event": "info", "message": "caf\u00e9"}),  # a UTF-8 character split across reads
        ("event", {"event": "finished", "run": 4}),
    ]
    assert buffer.flush() == []


def test_the_worker_command_line_round_trips_through_the_train_parser():
    settings = TrainSettings(
        algorithm="fixmatch",
        encoder="clip:ViT-B-32:openai",
        mode="finetune",
        device="cpu",
        method=MethodConfig(use_text=False, dynamic_threshold=False, threshold=0.9, weights=(1.0, 0.5, 2.0)),
        loop=LoopConfig(steps=77, batch_size=8, seed=5, lr=3e-4),
        projection="none",
    )
    argv = train_argv("/some/project", settings)
    assert argv[:2] == ["train", "/some/project"] and argv[argv.index("--events") + 1] == "json"
    assert "--no-text" in argv and "--no-dynamic-threshold" in argv and "--instance" not in argv
    args = build_parser().parse_args(argv)
    assert settings_from_args(args).to_dict() == settings.to_dict()
    assert (
        settings_from_args(build_parser().parse_args(train_argv("p", TrainSettings()))).to_dict()
        == TrainSettings().to_dict()
    )
    # A descriptions file: absolute on the command line; a run's own copy is relative to its project.
    given = settings_from_args(build_parser().parse_args(["train", "p", "--descriptions", "mine.json"]))
    assert Path(given.descriptions).is_absolute() and Path(given.descriptions).name == "mine.json"
    recorded = train_argv("/some/project", TrainSettings(descriptions="descriptions.json"))
    assert recorded[recorded.index("--descriptions") + 1] == str(Path("/some/project") / "descriptions.json")


def test_the_form_gives_settings_and_each_algorithm_its_own_switches(qtbot):
    from app.training_form import TrainingForm

    form = TrainingForm()
    qtbot.addWidget(form)
    form.set_values(algorithm="sitfer", encoder="tiny", steps=300, batch_size=16, projection="pca")
    form.switches["use_instance"].setChecked(False)
    form.switches["negative_learning"].setChecked(False)
    form.device.setCurrentText("cpu")
    settings = form.settings()
    settings.validate()
    assert (settings.algorithm, settings.encoder, settings.projection, settings.device) == (
        "sitfer",
        "tiny",
        "pca",
        "cpu",
    )
    assert settings.loop.steps == 300 and settings.loop.batch_size == 16 and settings.loop.log_every == 10
    assert not settings.method.use_instance and not settings.method.negative_learning and settings.method.use_text
    # The shared dynamic-thresholds box shows each algorithm's own default: off for sitfer, on for DTA-SNL.
    assert not form.switches["dynamic_threshold"].isChecked() and settings.method.dynamic_threshold is False
    form.set_values(algorithm="dta-snl")
    assert form.switches["dynamic_threshold"].isChecked() and form.settings().method.dynamic_threshold is True
    form.set_values(algorithm="fixmatch")
    assert not form.switches["use_text"].isEnabled()
    assert form.settings().method == MethodConfig()  # the baselines ignore sitfer's switches
    form.switches["leaf_modules"].setChecked(True)
    assert form.settings().method.leaf_modules, "fixmatch takes LEAF's modules"
    form.set_values(algorithm="leaf")
    assert form.switches_title.text() == "LEAF" and not form.switches["leaf_modules"].isVisibleTo(form)
    form.switches["leaf_category"].setChecked(False)
    assert not form.settings().method.leaf_category and form.settings().method.use_instance
    form.set_values(algorithm="supervised")
    assert not form.switches_title.isVisibleTo(form)
    assert form.settings().method == MethodConfig()


def test_the_form_shows_each_algorithm_as_its_spec_says(qtbot):
    from app.training_form import TrainingForm
    from core.ssl.spec import ALGORITHM_SPECS

    form = TrainingForm()
    qtbot.addWidget(form)
    form.show()
    assert {form.algorithm.itemText(i) for i in range(form.algorithm.count())} == set(ALGORITHM_SPECS)
    for spec in ALGORITHM_SPECS.values():
        form.set_values(algorithm=spec.name)
        shown = [name for name, box in form.switches.items() if box.isVisibleTo(form)]
        assert sorted(shown) == sorted(switch.field for switch in spec.switches), spec.name
        for switch in spec.switches:
            box = form.switches[switch.field]
            assert (box.text(), box.toolTip()) == (switch.label, switch.tooltip)
        if spec.switches:
            assert form.switches_title.text() == spec.title and form.switches_title.toolTip() == spec.description
        assert form.warmup.isVisibleTo(form) == spec.traits.instance_level


# -- real and fake workers from the panel ---------------------------------------------------------
def test_a_run_launched_from_the_panel_finishes_and_shows_everywhere(qtbot, window, demo):
    panel, state = window.training, window.state
    assert state.current_run is None and panel.history.history.rowCount() == 0
    quick_form(panel)
    events = []
    panel.worker.event.connect(events.append)
    outcome = run_to_end(qtbot, panel)
    assert outcome.status == "finished", outcome
    kinds = [e["event"] for e in events if e["event"] != "phase"]
    assert kinds[0] == "started" and kinds[-1] == "finished" and "progress" in kinds and "metrics" in kinds
    # Every event the real worker sent is one of core.training.events' names, and the panel
    # handles every name a run can send.
    from core.training.events import RUN_EVENTS

    assert {e["event"] for e in events} <= RUN_EVENTS and {"info", "map"} <= set(kinds)
    assert set(panel.event_handlers()) == RUN_EVENTS
    run_id = outcome.run_id
    assert panel.status.property("runState") == "finished" and f"Run {run_id} finished" in panel.status.text()
    assert "SIT-FER on the tiny encoder, 30 steps, val accuracy" in panel.status.text()
    assert "val_fused_accuracy" in panel.run_status.details_text()  # every final metric, in the details
    # Every phase was shown in order, and the bar ends full only now that the run has finished;
    # the features phase says twice what it does (image features, then the face meshes).
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["starting", "encoder", "features", "features", "training", "predictions", "map"]
    assert "face meshes" in [e for e in events if e["event"] == "phase"][3]["message"]
    assert any(e["event"] == "progress" and e["phase"] == "training" and e["total"] == 30 for e in events)
    assert panel.progress.value() == panel.progress.maximum() == 1 and panel.progress.format() == "done"
    assert panel.run_progress.done == set(PHASES) and "✓ map" in panel.run_progress.strip.text()
    assert not panel.busy and panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert {"loss_sup", "loss_text", "val_accuracy", "mask_rate", "threshold_fear"} <= panel.curves.curve_names()
    assert panel.curves.thresholds.legend_names()[:2] == ["surprise", "fear"]  # class order, class colours
    # The history shows the run, selected, with its final validation accuracy.
    history = panel.history.history
    assert history.rowCount() == 1 and history.run(0).id == run_id and history.run(0).status == "finished"
    assert history.run(0).val_accuracy is not None and panel.history.selected_run() == run_id
    # The run is the current one now: the map shows its points.
    assert state.current_run == run_id
    view = window.map_view
    assert view.pages.currentWidget() is view.map_page and len(view.scatter.data) == FACES
    with Project.open(demo) as project, project.session() as session:
        assert session.get(Run, run_id).status == "finished"
    assert "--events json" in panel.log.toPlainText()


def test_selecting_a_run_in_the_history_shows_its_curves(qtbot, demo, dialogs):
    with Project.open(demo) as project:
        for algorithm in ("supervised", "fixmatch"):
            train(project, quick_settings(algorithm, steps=15), JsonEvents(io.StringIO()))
    win = studio_window(qtbot, demo, dialogs)
    panel, state = win.training, win.state
    assert state.current_run == 2 and panel.history.selected_run() == 2
    assert "mask_rate" in panel.curves.curve_names()  # fixmatch has a mask rate
    assert "FixMatch on the tiny encoder" in panel.curves_caption.text()
    panel.history.selectRow(panel.history.history.row_of(1))
    assert state.current_run == 1 and "Supervised" in panel.curves_caption.text()
    assert "mask_rate" not in panel.curves.curve_names() and "loss_sup" in panel.curves.curve_names()
    assert win.map_view.data.run_id == 1
    win.close()


def test_a_crashing_worker_shows_its_error_and_the_studio_keeps_working(qtbot, window, monkeypatch):
    fake_worker(
        monkeypatch,
        "import sys; print('junk {not json', flush=True); "
        'print(\'{"event": "progress", "step": 1, "total": 10}\', flush=True); '
        "sys.stderr.write('Traceback (most recent call last):\\nRuntimeError: boom\\n'); "
        "sys.exit(1)",
    )
    panel = window.training
    outcome = run_to_end(qtbot, panel)
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert panel.status.property("runState") == "failed"
    assert "exited with code 1" in panel.status.text() and "RuntimeError: boom" in panel.status.text()
    assert "junk {not json" in panel.log.toPlainText()
    # The window and the project carry on.
    assert not panel.busy and panel.start_button.isEnabled() and window.open_action.isEnabled()
    assert window.model.rowCount() == FACES and window.state.stats()["images"] == FACES
    window.panel.split_combo.setCurrentIndex(window.panel.split_combo.findData("val"))
    assert window.model.rowCount() == 21


def test_a_worker_that_fails_with_an_event_shows_the_error(qtbot, window, demo):
    panel = window.training
    quick_form(panel, encoder="clip:NoSuchModel")  # a well-formed spec that no model answers to
    outcome = run_to_end(qtbot, panel)
    assert outcome.status == "failed" and outcome.run_id is not None
    assert "unknown open_clip model 'NoSuchModel'" in panel.status.text()
    history = panel.history.history
    assert history.run(0).status == "failed" and "NoSuchModel" in history.run(0).error
    assert window.map_view.pages.currentWidget() is window.map_view.empty  # no finished run, no map


def test_settings_that_cannot_work_are_refused_before_launch(qtbot, window):
    panel = window.training
    quick_form(panel, encoder="resnet")
    assert not panel.start()
    assert (
        not panel.busy and "Cannot start" in panel.status.text() and "unknown encoder 'resnet'" in panel.status.text()
    )


def test_cancel_ends_the_run_cancelled(qtbot, window, dialogs, demo, tmp_path):
    panel = window.training
    quick_form(panel, steps=200_000)
    with qtbot.waitSignal(panel.worker.ended, timeout=WORKER_TIMEOUT_MS) as ended:
        assert panel.start()
        qtbot.waitUntil(lambda: "loss_sup" in panel.curves.curve_names(), timeout=WORKER_TIMEOUT_MS)
        assert panel.progress.value() > 0 and "left" in panel.eta.text()
        # While it trains, the project cannot be switched away from under it.
        other = make_demo(tmp_path / "other")
        assert not window.open_project(other) and dialogs.errors[-1][0] == "Training running"
        assert not window.open_action.isEnabled()
        panel.cancel_button.click()
    outcome = ended.args[0]
    assert outcome.status == "cancelled" and outcome.exit_code == 130
    assert panel.status.property("runState") == "cancelled" and "cancelled" in panel.status.text()
    assert panel.history.history.run(0).status == "cancelled"
    with Project.open(demo) as project, project.session() as session:
        run = session.get(Run, outcome.run_id)
        assert run.status == "cancelled" and project.resolve_path(run.checkpoint).is_file()
    assert window.open_action.isEnabled() and window.open_project(other)


def test_a_worker_that_ignores_sigterm_is_killed(qtbot, window, monkeypatch):
    fake_worker(
        monkeypatch,
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        'print(\'{"event": "progress", "step": 1, "total": 9}\', flush=True); '
        "time.sleep(120)",
    )
    panel = window.training
    with qtbot.waitSignal(panel.worker.event, timeout=30_000):
        assert panel.start()
    with qtbot.waitSignal(panel.worker.ended, timeout=30_000) as ended:
        panel.worker.cancel(kill_after_ms=300)
    assert ended.args[0].status == "cancelled" and ended.args[0].exit_code is None  # killed
    assert "killed" in panel.log.toPlainText() and not panel.busy


def test_a_worker_that_cannot_start_fails_cleanly(qtbot, window, monkeypatch):
    import app.worker_process as worker_process

    monkeypatch.setattr(worker_process, "worker_command", lambda root, settings: ("/no/such/python", []))
    panel = window.training
    outcome = run_to_end(qtbot, panel)
    assert outcome.status == "failed" and "could not start the worker" in panel.status.text()
    assert panel.start_button.isEnabled()


def test_closing_the_window_cancels_a_running_worker(qtbot, dialogs, demo):
    win = studio_window(qtbot, demo, dialogs)
    panel = win.training
    quick_form(panel, steps=200_000)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.run_id is not None, timeout=WORKER_TIMEOUT_MS)
    win.close()
    assert not panel.busy
    with Project.open(demo) as project, project.session() as session:
        assert session.get(Run, panel.run_id).status in ("cancelled", "failed")


# -- phases, resume, auto steps and warnings ----------------------------------------------------------
def event_line(**fields) -> str:
    import json

    return json.dumps(fields)


def test_the_phase_shows_from_the_moment_start_is_pressed(qtbot, window, monkeypatch):
    fake_worker(monkeypatch, "import time; time.sleep(3)")  # a worker still importing torch
    panel = window.training
    with qtbot.waitSignal(panel.worker.ended, timeout=30_000):
        assert panel.start()
        # Before the process has printed anything: the starting phase, a busy bar, not "no run going".
        assert panel.run_progress.phase == "starting" and panel.progress.maximum() == 0
        assert "starting the worker" in panel.progress.format() and "● starting" in panel.run_progress.strip.text()
        qtbot.wait(1300)
        assert panel.eta.text().endswith("s")  # the time it has been starting, ticking


def test_each_phase_counts_and_the_map_gets_its_own_busy_bar(qtbot, window, monkeypatch):
    lines = [
        event_line(event="phase", phase="features", message="features of 77 faces"),
        event_line(event="progress", phase="features", step=32, total=77, eta_s=12.0),
        event_line(event="phase", phase="training", message="training 200 steps"),
        event_line(event="progress", phase="training", step=200, total=200, eta_s=0.0),
        event_line(event="phase", phase="predictions", message="writing"),
        event_line(event="phase", phase="map", message="computing the UMAP map of 77 faces", eta_s=40.0),
    ]
    script = "import time\n" + "".join(f"print({line!r}, flush=True)\n" for line in lines) + "time.sleep(30)\n"
    fake_worker(monkeypatch, script)
    panel = window.training
    seen = []
    panel.worker.event.connect(lambda e: seen.append((e, panel.progress.format(), panel.eta.text())))
    assert panel.start()
    qtbot.waitUntil(lambda: len(seen) == len(lines), timeout=30_000)
    ((_, features_bar, features_eta),) = [(e, f, t) for e, f, t in seen if e["event"] == "progress"][:1]
    assert features_bar == "features: 32 / 77 faces" and features_eta == "about 12 s left"
    # The last training step does not leave a full bar standing while the map is computed.
    assert panel.run_progress.phase == "map" and panel.progress.maximum() == 0
    assert "UMAP" in panel.progress.format() and panel.eta.text() == "about 40 s left"
    assert {"starting", "encoder", "features", "training", "predictions"} <= panel.run_progress.done
    with qtbot.waitSignal(panel.worker.ended, timeout=30_000):
        panel.cancel()
    assert panel.progress.format() == "cancelled during map"


def test_resume_continues_a_cancelled_run_through_the_worker(qtbot, window, monkeypatch, demo):
    import app.worker_process as worker_process

    class StopAtFirstMetrics(JsonEvents):  # cancel once training is under way
        stop = False

        def emit(self, event, **fields):
            self.stop = self.stop or event == "metrics"
            super().emit(event, **fields)

    events = StopAtFirstMetrics(io.StringIO())
    with Project.open(demo) as project:  # a run cancelled during training keeps its checkpoint
        outcome = train(project, quick_settings(steps=400), events, should_stop=lambda: events.stop)
    assert outcome.status == "cancelled"
    run_id = outcome.run_id
    argv = worker_process.resume_command(demo, run_id)[1]
    args = build_parser().parse_args(argv[1:])
    assert args.resume == run_id and args.events == "json"
    launched = []

    def fake_resume(root, run):
        launched.append(run)
        return sys.executable, ["-c", f'print(\'{{"event": "finished", "run": {run}}}\', flush=True)']

    monkeypatch.setattr(worker_process, "resume_command", fake_resume)
    panel, history = window.training, window.training.history
    history.history.reload()
    history.selectRow(history.history.row_of(run_id))
    assert panel.resume_button.isVisibleTo(panel) and panel.resume_button.text() == f"Resume run {run_id}"
    menu = history.context_menu(history.history.row_of(run_id))
    assert menu is not None and [a.text() for a in menu.actions()] == [f"Resume run {run_id} from its checkpoint"]
    with qtbot.waitSignal(panel.worker.ended, timeout=30_000):
        panel.resume_button.click()
    assert launched == [run_id]


def test_the_form_shows_auto_steps_and_warns_before_start(qtbot, window):
    form = window.training.form
    assert form.settings().loop.steps is None  # auto: the run chooses
    assert (
        form.steps.text() == "auto (200)"
        and "200 steps for this project (14 labeled, 42 unlabeled" in form.auto_note.text()
    )
    assert not form.warning.isVisibleTo(form)
    form.set_values(steps=100)
    form.warmup.setValue(300)
    assert form.warning.isVisibleTo(form) and "instance level cannot appear" in form.warning.text()
    assert form.settings().method.instance_warmup == 300 and form.settings().loop.steps == 100
    form.warmup.setValue(50)
    assert not form.warning.isVisibleTo(form)
    form.set_values(algorithm="fixmatch")
    assert not form.warmup.isVisibleTo(form) and form.settings().method.instance_warmup is None


def test_a_project_without_a_finished_run_offers_a_first_model(qtbot, window, monkeypatch):
    launched = []
    import app.worker_process as worker_process

    def fake(root, settings):
        launched.append(settings)
        return sys.executable, ["-c", "import time; time.sleep(2)"]

    monkeypatch.setattr(worker_process, "worker_command", fake)
    window.training.form.set_values(algorithm="fixmatch", steps=5)  # whatever the form shows: the defaults win
    review_empty, map_empty = window.review.empty, window.map_view.empty
    for empty in (review_empty, map_empty):
        assert empty.button.isVisibleTo(empty) and empty.button.isEnabled()
        assert empty.button.text() == "Train a first model (auto: 200 steps)"
    with qtbot.waitSignal(window.training.worker.ended, timeout=30_000):
        review_empty.button.click()
        assert window.training.busy and not map_empty.button.isEnabled() and "Training" in map_empty.button.text()
    [settings] = launched  # the defaults, steps left to auto
    defaults = TrainSettings()
    assert (settings.algorithm, settings.encoder, settings.mode, settings.projection) == (
        defaults.algorithm,
        defaults.encoder,
        defaults.mode,
        defaults.projection,
    )
    assert settings.loop.steps is None and settings.loop.batch_size == defaults.loop.batch_size
    assert settings.method.use_instance and settings.method.instance_warmup is None


def test_the_first_start_trains_a_model_on_the_demo_it_builds(qtbot, monkeypatch):
    import app.worker_process as worker_process
    from app.main import start_studio

    launched = []
    monkeypatch.setattr(
        worker_process,
        "worker_command",
        lambda root, settings: launched.append(root) or (sys.executable, ["-c", "pass"]),
    )
    window = start_studio(None, dialogs=FakeDialogs(), demo_settings=SMALL_DEMO, train_first_model=True)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: bool(launched), timeout=60_000)
    assert Path(launched[0]) == window.state.root and window.center_tabs.currentWidget() is window.review
    qtbot.waitUntil(lambda: not window.training.busy, timeout=30_000)
    window.close()
    # The next start opens the demo as it is: no training by itself.
    again = start_studio(None, dialogs=FakeDialogs(), train_first_model=True)
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.state.project is not None, timeout=60_000)
    qtbot.wait(200)
    assert len(launched) == 1 and again.review.empty.button.isEnabled()
    again.close()


def test_a_first_run_is_shown_once_its_predictions_are_written(qtbot, window, monkeypatch, demo):
    """Its review queue does not wait for the UMAP map; if the run then fails, it gives way."""
    from sqlalchemy import update

    with Project.open(demo) as project:  # a run whose predictions and PCA map are written, UMAP to come
        run_id = train(project, quick_settings(), JsonEvents(io.StringIO())).run_id
        with project.session() as session:
            session.execute(update(Run).where(Run.id == run_id).values(status="running", pid=2**22 + 7))
    window.state.set_project(Project.open(demo))  # opened again: no finished run, nothing shown
    assert window.state.current_run is None
    script = (
        f"import time\nprint({event_line(event='started', run=run_id)!r}, flush=True)\n"
        f"print({event_line(event='map', run=run_id, method='pca', final=False)!r}, flush=True)\n"
        f"time.sleep(4)\n"
    )
    fake_worker(monkeypatch, script)
    window.show()
    qtbot.waitExposed(window)
    window.show_review()  # the queue builds while it is shown
    panel, review = window.training, window.review
    with qtbot.waitSignal(panel.worker.ended, timeout=30_000):
        assert panel.start()
        qtbot.waitUntil(lambda: review.last_result is not None, timeout=20_000)
        assert panel.busy and window.state.current_run == run_id and review.last_result.request.run_id == run_id
        qtbot.waitUntil(lambda: "PCA preview" in window.map_view.info.text(), timeout=10_000)  # UMAP to come
    # The worker ended without finishing (it died): the run is reaped as failed and gives way.
    assert window.state.current_run is None and review.pages.currentWidget() is review.empty


def test_the_docks_are_saved_with_the_window_layout(qtbot, window, dialogs, demo):
    window.show()
    qtbot.waitExposed(window)
    assert window.map_dock.objectName() == "mapDock" and window.training_dock.objectName() == "trainingDock"
    docks = {window.training_dock, window.detail_dock, window.agreement_dock}  # View ▸ Agreement is a tab too
    assert set(window.tabifiedDockWidgets(window.map_dock)) == docks
    window.training_dock.toggleViewAction().trigger()  # View ▸ Training: hide it
    assert not window.training_dock.isVisible()
    window.close()
    again = studio_window(qtbot, demo, dialogs)
    again.show()
    qtbot.waitExposed(again)
    assert not again.training_dock.isVisible() and again.map_dock.isVisible()
    again.close()


def test_a_panels_key_brings_it_to_the_front_before_it_hides_it(qtbot, window):
    """Ctrl+G on the Agreement panel open as a tab behind the map shows it; pressed again it
    hides it; once more it comes back in front."""
    window.show()
    qtbot.waitExposed(window)
    window.map_dock.raise_()
    qtbot.waitUntil(lambda: window.agreement_dock.visibleRegion().isEmpty())
    action = next(a for a in window.menuBar().actions() if a.text() == "&View").menu().actions()[3]
    assert action.shortcut().toString() == "Ctrl+G" and action.isChecked()

    def in_front() -> bool:
        return not window.agreement_dock.isHidden() and not window.agreement_dock.visibleRegion().isEmpty()

    action.trigger()
    qtbot.waitUntil(in_front)
    assert action.isChecked()
    action.trigger()
    assert window.agreement_dock.isHidden() and not action.isChecked()
    action.trigger()
    qtbot.waitUntil(in_front)
    window.agreement_dock.close()  # its own close button: the menu follows
    assert not action.isChecked()


def test_many_qt_calls_do_not_use_up_none(qtbot):
    """PySide6 6.12 on Python 3.11 drops a reference to None on every void call; app/qt_compat.py
    makes that harmless (without it, this aborts the interpreter)."""
    from PySide6.QtWidgets import QLabel

    import app  # noqa: F401  (applies the work-around)

    label = QLabel()
    qtbot.addWidget(label)
    for _ in range(200_000):
        label.setText("x")
    if sys.version_info < (3, 12):  # from 3.12 None is immortal and needs no headroom
        assert sys.getrefcount(None) > 1 << 40
