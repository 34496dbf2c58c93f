"""Live refit (core/training/refit.py): a warm-started head refit recorded as a run with a
parent, placed in its parent's map, pruned once superseded; `main.py refit`; the trigger policy."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from core.labeling import set_label
from core.store.models import HiddenTruth, Image, Label, Metric, Prediction, Projection, Run, RunLabel
from core.store.project import Project
from core.training.events import JsonEvents
from core.training.refit import RefitMemory, refit
from core.training.worker import RunError, train
from tests.studio_runs import make_demo, project_copy, quick_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The small demo (77 faces, 14 labeled) with one finished sitfer run of the tiny encoder."""
    return make_demo(tmp_path_factory.mktemp("refit") / "demo", ("sitfer",))


@pytest.fixture
def root(template, tmp_path) -> Path:
    return project_copy(template, tmp_path)


def run_refit(root: Path, parent: int | None = None, **kwargs):
    stream = io.StringIO()
    with Project.open(root) as project:
        outcome = refit(project, parent, JsonEvents(stream), **kwargs)
    return outcome, [json.loads(line) for line in stream.getvalue().splitlines()]


def predictions(root: Path, run_id: int) -> dict[int, list[float]]:
    with Project.open(root) as project, project.session() as s:
        return dict(s.execute(select(Prediction.image_id, Prediction.p_fused).where(Prediction.run_id == run_id)).all())


def coords(root: Path, run_id: int, method: str = "pca") -> dict[int, tuple[float, float]]:
    with Project.open(root) as project, project.session() as s:
        return {face: (x, y) for face, x, y in s.execute(
            select(Projection.image_id, Projection.x, Projection.y)
            .where(Projection.run_id == run_id, Projection.method == method))}


def unlabeled_train_faces(root: Path, n: int) -> list[tuple[int, str]]:
    """n unlabeled train faces with their withheld true label."""
    with Project.open(root) as project, project.session() as s:
        return [tuple(row) for row in s.execute(
            select(Image.id, HiddenTruth.label).join(HiddenTruth, HiddenTruth.image_id == Image.id)
            .outerjoin(Label, Label.image_id == Image.id)
            .where(Image.split == "train", Label.image_id.is_(None)).order_by(Image.id).limit(n))]


def test_a_refit_is_a_run_with_its_parent_and_todays_labeled_set(root):
    face, truth = unlabeled_train_faces(root, 1)[0]
    with Project.open(root) as project:
        set_label(project, face, truth, "ana")  # after the parent ran
    outcome, events = run_refit(root, steps=5)
    assert outcome.status == "finished", events[-1]
    assert [e["event"] for e in events if e["event"] in ("started", "finished")] == ["started", "finished"]
    assert events[-1]["run"] == outcome.run_id == 2 and events[-1]["parent"] == 1
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["starting", "encoder", "features", "training", "predictions", "map"]
    with Project.open(root) as project, project.session() as s:
        run = s.get(Run, outcome.run_id)
        assert (run.kind, run.parent_run_id, run.mode, run.config["loop"]["steps"]) == ("refit", 1, "head", 5)
        labeled = dict(s.execute(select(RunLabel.image_id, RunLabel.label).where(RunLabel.run_id == run.id)).all())
        parent_labeled = dict(s.execute(select(RunLabel.image_id, RunLabel.label).where(RunLabel.run_id == 1)).all())
        assert labeled == {**parent_labeled, face: truth}
        assert s.scalar(select(func.count()).select_from(Prediction).where(Prediction.run_id == run.id)) == 77
        assert s.scalar(select(func.count()).select_from(Metric).where(
            Metric.run_id == run.id, Metric.name == "val_fused_accuracy")) >= 1
    assert (root / "checkpoints" / f"run_{outcome.run_id}.pt").is_file(), "the next refit's starting point"


def test_a_refit_of_no_steps_reproduces_its_parent(root):
    """The warm start really loads the parent: head, teacher, thresholds and memory bank."""
    outcome, events = run_refit(root, 1, steps=0)
    assert outcome.status == "finished", events[-1]
    parent, child = predictions(root, 1), predictions(root, outcome.run_id)
    assert child.keys() == parent.keys()
    assert max(abs(a - b) for face in parent for a, b in zip(parent[face], child[face])) < 1e-4
    # ... and its map is the parent's map: nothing moved, so nobody moved.
    before, after = coords(root, 1), coords(root, outcome.run_id)
    assert max(abs(np.subtract(before[face], after[face])).max() for face in before) < 1e-4


def test_a_refit_that_cannot_start_says_why(root):
    with Project.open(root) as project:
        for parent, message in ((99, "no run 99"), (None, None)):
            if parent is None:
                with project.session() as s:
                    s.get(Run, 1).mode = "finetune"
                message = "fine-tune mode"
            with pytest.raises(RunError, match=message):
                refit(project, parent, JsonEvents(io.StringIO()))
        with project.session() as s:
            assert s.scalar(select(func.count()).select_from(Run)) == 1, "no run row for a refit that never started"


def test_the_refit_command_prints_train_events_ending_with_the_new_run(root):
    """`main.py refit` as the cold process the studio or a script starts."""
    done = subprocess.run([sys.executable, str(REPO / "main.py"), "refit", str(root), "--steps", "3", "--events", "json"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "phase" and events[-1]["event"] == "finished"
    assert events[-1]["run"] == 2 and events[-1]["parent"] == 1 and "pruned" in events[-1]
    assert {"started", "phase", "progress", "metrics", "map"} <= {e["event"] for e in events}
    listing = subprocess.run([sys.executable, str(REPO / "main.py"), "runs", str(root)],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
    assert "refit of run 1" in listing.stdout.splitlines()[-1], listing.stdout


def test_the_refit_command_exits_like_the_others_when_it_cannot_start(root, tmp_path, capsys):
    from core.cli import main

    assert main(["refit", str(root), "--run", "7", "-q"]) == 2
    assert "there is no run 7" in capsys.readouterr().err
    assert main(["refit", str(tmp_path / "nowhere"), "-q"]) == 3
    with pytest.raises(SystemExit) as exit_:
        main(["refit", str(root), "--steps", "-1"])
    assert exit_.value.code == 2


def test_the_policy_refits_every_k_corrections_or_after_a_pause():
    from core.active.refit_policy import RefitPolicy

    policy = RefitPolicy(every=20, pause_s=8)
    assert not policy.decide(0, None).refit
    assert not policy.decide(19, 1.0).refit
    assert policy.decide(20, 0.1).refit and "20 corrections" in policy.decide(20, 0.1).reason
    assert not policy.decide(3, 7.9).refit
    assert policy.decide(3, 8.0).refit and "pause" in policy.decide(3, 8.0).reason
    assert not policy.decide(40, 30.0, running=True).refit, "never two refits at once"
    assert policy.seconds_until_due(3, 5.0) == 3.0
    assert policy.seconds_until_due(0, 5.0) is None
    patient = RefitPolicy(every=5, pause_s=None)
    assert not patient.decide(4, 3600.0).refit and patient.decide(5, 0.0).refit
    assert patient.seconds_until_due(4, 1.0) is None
    for every, pause in ((0, 8), (2.5, 8), (20, 0), (20, float("nan"))):
        with pytest.raises(ValueError, match="refit"):
            RefitPolicy(every=every, pause_s=pause)
