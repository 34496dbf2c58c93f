"""Defaults that scale with the data: the step count, the validation and checkpoint cadence and
the instance warm-up chosen from the train faces when left to "auto", recorded with the run; and
the warning for a ticked level that cannot appear in a run."""

from __future__ import annotations

import io
import json

import pytest

from core.cli import main
from core.ssl.config import MethodConfig
from core.store.models import Run
from core.store.project import Project
from core.training.events import ConsoleEvents, JsonEvents
from core.training.settings import (
    AUTO_STEPS_CAP,
    AUTO_STEPS_FLOOR,
    LoopConfig,
    TrainSettings,
    auto_schedule,
    auto_steps,
)
from core.training.worker import train
from tests.studio_runs import make_demo

DEMO_TRAIN = (70, 630)  # the studio's demo: labeled and unlabeled train faces
FER2013_TRAIN = (700, 26_785)  # FER2013 train with 100 labeled faces per class


def test_auto_steps_grow_with_the_faces_between_a_floor_and_a_cap():
    assert auto_steps(*DEMO_TRAIN) == AUTO_STEPS_FLOOR
    assert auto_steps(*FER2013_TRAIN) == AUTO_STEPS_CAP
    middle = [auto_steps(100, unlabeled) for unlabeled in (3_000, 6_000, 12_000)]
    assert AUTO_STEPS_FLOOR < middle[0] < middle[1] < middle[2] < AUTO_STEPS_CAP
    assert all(steps % 50 == 0 for steps in middle)
    # Many labeled faces need steps too, even without unlabeled ones (a supervised run).
    assert auto_steps(20_000, 0) == AUTO_STEPS_CAP and auto_steps(5_000, 0) > AUTO_STEPS_FLOOR


def test_the_schedule_follows_the_steps():
    short, long = auto_schedule(200), auto_schedule(1500)
    assert short.instance_warmup < 200 and long.instance_warmup == 300  # 300 of 1,500: the former default
    assert 1 <= short.eval_every < 200 and short.checkpoint_every < 200
    assert long.eval_every > short.eval_every and long.checkpoint_every > short.checkpoint_every


def test_the_trainers_cadence_is_the_filled_in_schedule_and_needs_the_steps():
    loop = LoopConfig(steps=777, eval_every=7, log_every=5)
    cadence = loop.cadence()
    assert (cadence.steps, cadence.log_every, cadence.eval_every) == (777, 5, 7)  # what was set stays
    assert cadence.checkpoint_every == auto_schedule(777).checkpoint_every  # "auto" follows the steps
    scheduled = loop.with_schedule()
    assert (scheduled.eval_every, scheduled.checkpoint_every) == (cadence.eval_every, cadence.checkpoint_every)
    with pytest.raises(ValueError, match="steps is 'auto'"):
        LoopConfig().cadence()


def test_resolved_fills_only_what_was_left_to_auto():
    auto = TrainSettings().resolved(*DEMO_TRAIN)
    assert auto.loop.steps == auto_steps(*DEMO_TRAIN)
    schedule = auto_schedule(auto.loop.steps)
    assert (auto.loop.eval_every, auto.loop.checkpoint_every, auto.method.instance_warmup) == (
        schedule.eval_every,
        schedule.checkpoint_every,
        schedule.instance_warmup,
    )
    chosen = TrainSettings(loop=LoopConfig(steps=777, eval_every=7), method=MethodConfig(instance_warmup=5))
    resolved = chosen.resolved(*DEMO_TRAIN)
    assert (resolved.loop.steps, resolved.loop.eval_every, resolved.method.instance_warmup) == (777, 7, 5)
    assert resolved.loop.checkpoint_every == auto_schedule(777).checkpoint_every
    assert resolved.resolved(1, 1).to_dict() == resolved.to_dict()  # numbers stay numbers
    # A supervised run draws only labeled faces: the unlabeled ones do not lengthen it.
    supervised = TrainSettings(algorithm="supervised")
    assert supervised.resolved(*FER2013_TRAIN).loop.steps == auto_steps(700, 0) < AUTO_STEPS_CAP


def test_a_level_that_cannot_appear_is_warned_about():
    late = TrainSettings(loop=LoopConfig(steps=200), method=MethodConfig(instance_warmup=300)).resolved(*DEMO_TRAIN)
    [warning] = late.level_warnings()
    assert "instance level cannot appear" in warning and "300" in warning and "200" in warning
    assert not TrainSettings().resolved(*DEMO_TRAIN).level_warnings()  # auto: it appears
    assert (
        not TrainSettings(loop=LoopConfig(steps=200), method=MethodConfig(instance_warmup=300, use_instance=False))
        .resolved(*DEMO_TRAIN)
        .level_warnings()
    )  # not ticked
    assert (
        not TrainSettings(algorithm="fixmatch", loop=LoopConfig(steps=200), method=MethodConfig(instance_warmup=300))
        .resolved(*DEMO_TRAIN)
        .level_warnings()
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("defaults") / "demo")


def test_a_run_records_the_numbers_auto_chose(demo):
    stream = io.StringIO()
    settings = TrainSettings(encoder="tiny", projection="none", strong_views=1, loop=LoopConfig(batch_size=8))
    with Project.open(demo) as project:
        outcome = train(project, settings, JsonEvents(stream))
        assert outcome.status == "finished", outcome
        with project.session() as session:
            config = session.get(Run, outcome.run_id).config
    labeled, unlabeled = 14, 42  # SMALL_DEMO's train faces
    expected = TrainSettings(loop=LoopConfig(batch_size=8)).resolved(labeled, unlabeled)
    assert config["loop"]["steps"] == expected.loop.steps == AUTO_STEPS_FLOOR
    assert config["loop"]["eval_every"] == expected.loop.eval_every
    assert config["loop"]["checkpoint_every"] == expected.loop.checkpoint_every
    assert config["method"]["instance_warmup"] == expected.method.instance_warmup
    started = next(json.loads(line) for line in stream.getvalue().splitlines() if '"started"' in line)
    assert started["steps"] == AUTO_STEPS_FLOOR and f"{AUTO_STEPS_FLOOR} steps" in started["message"]


def test_train_warns_when_a_ticked_level_cannot_appear(demo, capsys):
    code = main(
        [
            "train",
            str(demo),
            "--encoder",
            "tiny",
            "--projection",
            "none",
            "--strong-views",
            "1",
            "--steps",
            "4",
            "--batch-size",
            "8",
            "--instance-warmup",
            "10",
            "--events",
            "json",
        ]
    )
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warnings = [e for e in events if e["event"] == "warning"]
    assert len(warnings) == 1 and "instance level cannot appear" in warnings[0]["message"]
    assert [e["event"] for e in events].index("warning") < [e["event"] for e in events].index("finished")


def test_the_console_prints_warnings_and_phases(capsys):
    events = ConsoleEvents()
    events.emit("phase", phase="map", message="computing the UMAP map of 910 faces", eta_s=18.0)
    events.emit("warning", message="the instance level cannot appear in this run")
    err = capsys.readouterr().err
    assert "map: computing the UMAP map of 910 faces (about 18 s)" in err
    assert "warning: the instance level cannot appear in this run" in err


def test_the_benchmark_times_each_phase_from_the_events():
    from bench.default_steps import phase_seconds, render_sweep

    events = [
        {"event": "phase", "phase": "starting", "time": 10.0},
        {"event": "started", "time": 10.5},
        {"event": "phase", "phase": "training", "time": 12.0},
        {"event": "phase", "phase": "map", "time": 20.0},
        {"event": "finished", "time": 23.5},
    ]
    assert phase_seconds(events) == {"starting": 2.0, "training": 8.0, "map": 3.5}
    runs = [
        {"steps": 200, "seed": seed, "warmup": warmup, "val_fused_accuracy": accuracy, "phases": {"training": 9.0}}
        for seed, warmup, accuracy in ((0, "auto", 0.70), (1, "auto", 0.72), (0, "fixed 300", 0.71))
    ]
    table = render_sweep({"steps": [200], "seeds": [0, 1], "runs": runs, "machine": "test"})
    assert "| 200 | 71.0 (70.0-72.0) | 71.0 (71.0-71.0) | 9 |" in table
