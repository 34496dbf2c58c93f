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
from core.training.worker import RunError
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
        return {
            face: (x, y)
            for face, x, y in s.execute(
                select(Projection.image_id, Projection.x, Projection.y).where(
                    Projection.run_id == run_id, Projection.method == method
                )
            )
        }


def unlabeled_train_faces(root: Path, n: int) -> list[tuple[int, str]]:
    """n unlabeled train faces with their withheld true label."""
    with Project.open(root) as project, project.session() as s:
        return [
            tuple(row)
            for row in s.execute(
                select(Image.id, HiddenTruth.label)
                .join(HiddenTruth, HiddenTruth.image_id == Image.id)
                .outerjoin(Label, Label.image_id == Image.id)
                .where(Image.split == "train", Label.image_id.is_(None))
                .order_by(Image.id)
                .limit(n)
            )
        ]


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
        assert (
            s.scalar(
                select(func.count())
                .select_from(Metric)
                .where(Metric.run_id == run.id, Metric.name == "val_fused_accuracy")
            )
            >= 1
        )
    assert (root / "checkpoints" / f"run_{outcome.run_id}.pt").is_file(), "the next refit's starting point"
    from core.active.queue import build_queue
    from core.training.evaluation import evaluate_run

    with Project.open(root) as project:  # evaluate and the queue read a refit like any run
        assert evaluate_run(project, None, "val")["run"] == outcome.run_id
        assert len(build_queue(project, outcome.run_id, limit=5)) == 5


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
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "refit", str(root), "--steps", "3", "--events", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "phase" and events[-1]["event"] == "finished"
    assert events[-1]["run"] == 2 and events[-1]["parent"] == 1 and "pruned" in events[-1]
    assert {"started", "phase", "progress", "metrics", "map"} <= {e["event"] for e in events}
    listing = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "runs", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
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


def fused_of(root: Path, run_id: int, faces: list[int]) -> np.ndarray:
    table = predictions(root, run_id)
    return np.array([table[face] for face in faces])


def test_predictions_follow_the_corrections(root):
    from core.classes import class_names

    names = class_names()
    parent = predictions(root, 1)
    corrected = {}
    with Project.open(root) as project:
        for face, _truth in unlabeled_train_faces(root, 8):
            wrong = names[(int(np.argmax(parent[face])) + 3) % len(names)]  # a class the parent did not predict
            set_label(project, face, wrong, "ana")
            corrected[face] = names.index(wrong)
    outcome, events = run_refit(root, 1)
    assert outcome.status == "finished", events[-1]
    faces = list(corrected)
    wanted = np.array([corrected[face] for face in faces])
    before = fused_of(root, 1, faces)[np.arange(len(faces)), wanted]
    fused = fused_of(root, outcome.run_id, faces)
    after = fused[np.arange(len(faces)), wanted]
    assert (after > before).all(), (before, after)
    # The teacher that writes the predictions follows the refit (its window fits the refit's
    # steps): the corrections show, not a third of them.
    assert (fused.argmax(1) == wanted).mean() >= 0.75, (before, after)


def test_the_map_keeps_its_layout_and_refits_chain(root):
    face, truth = unlabeled_train_faces(root, 1)[0]
    with Project.open(root) as project:
        set_label(project, face, truth, "ana")
    first, _ = run_refit(root, 1, steps=10)
    second, events = run_refit(root, first.run_id, steps=10)
    assert second.status == "finished", events[-1]
    assert any("run 1's map" in e.get("message", "") for e in events if e["event"] == "map"), (
        "a refit of a refit is placed in the map that was computed, not in a placed one"
    )
    base, placed = coords(root, 1), coords(root, second.run_id)
    points = np.array(list(base.values()))
    extent = np.ptp(points, axis=0).max()
    moved = np.array([np.hypot(*np.subtract(base[f], placed[f])) for f in base])
    assert np.median(moved) < 0.05 * extent, (np.median(moved), extent)
    with Project.open(root) as project:
        from core.training.checkpoints import load_checkpoint

        steps = [
            load_checkpoint(project.cache_dir("checkpoints") / f"run_{r}.pt")["step"]
            for r in (1, first.run_id, second.run_id)
        ]
    assert steps[1] == steps[0] + 10 and steps[2] == steps[1] + 10, "each refit continues its parent's steps"
    from core.training.refit import REFIT_LR_SCALE

    with Project.open(root) as project:
        state = load_checkpoint(project.cache_dir("checkpoints") / f"run_{second.run_id}.pt")
    run_lr = quick_settings().loop.lr
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(run_lr * REFIT_LR_SCALE), (
        "a refit of a refit starts from the run's learning rate, not a shrinking one"
    )


def test_memory_keeps_what_the_next_refit_needs_until_the_faces_change(root):
    memory = RefitMemory()
    run_refit(root, steps=1, memory=memory)
    _, events = run_refit(root, steps=1, memory=memory)
    messages = {e["phase"]: e["message"] for e in events if e["event"] == "phase"}
    assert "loaded already" in messages["encoder"] and "in memory" in messages["features"]
    with Project.open(root) as project, project.session() as s:
        s.get(Image, 1).status = "excluded"
    outcome, events = run_refit(root, steps=1, memory=memory)
    messages = {e["phase"]: e["message"] for e in events if e["event"] == "phase"}
    assert "reading the cached features of 76 faces" in messages["features"]
    assert len(predictions(root, outcome.run_id)) == 76


def test_a_cancelled_or_failed_refit_is_recorded_so(root, monkeypatch):
    outcome, events = run_refit(root, steps=50, should_stop=lambda: True)
    assert outcome.status == "cancelled" and events[-1]["event"] == "cancelled"
    assert not (root / "checkpoints" / f"run_{outcome.run_id}.pt").exists(), "nothing to resume: refit again"

    def broken_placement(*_args, **_kwargs):
        raise RuntimeError("placement broke")

    monkeypatch.setattr("core.training.placement.place", broken_placement)
    outcome, events = run_refit(root, steps=1)
    assert outcome.status == "failed" and "placement broke" in events[-1]["error"]
    assert not (root / "checkpoints" / f"run_{outcome.run_id}.pt").exists(), "a failed refit is not resumed"
    with Project.open(root) as project, project.session() as s:
        assert [r.status for r in s.scalars(select(Run).order_by(Run.id))] == ["finished", "cancelled", "failed"]


def test_a_refit_whose_process_died_says_to_refit_again(root):
    import socket

    from core.store.runs import reap_dead_runs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Project.open(root) as project, project.session() as s:
        s.add(
            Run(
                algorithm="sitfer",
                encoder="tiny",
                kind="refit",
                parent_run_id=1,
                status="running",
                pid=int(dead.stdout),
                host=socket.gethostname(),
            )
        )
    with Project.open(root) as project, project.session() as s:
        reap_dead_runs(s)
        run = s.scalars(select(Run).where(Run.kind == "refit")).one()
        assert run.status == "failed" and "refit run 1 again" in run.error and "--resume" not in run.error


def test_thirty_refits_leave_the_project_bounded(root):
    from core.active.data import QueueError, resolve_run
    from core.training.evaluation import EvaluationError, evaluate_run

    memory = RefitMemory()
    finished = []
    for _ in range(30):
        outcome, events = run_refit(root, steps=1, memory=memory, keep_refits=3)
        assert outcome.status == "finished", events[-1]
        finished.append(events[-1])
    assert finished[-1]["pruned"]["runs"] == [finished[-1]["run"] - 3]
    assert "pruned the per-face results of superseded refit" in finished[-1]["message"]
    with Project.open(root) as project, project.session() as s:
        rows = s.scalar(select(func.count()).select_from(Prediction))
        assert rows == 77 * (1 + 3), "the trained run and the newest three refits keep their predictions"
        kept = set(s.scalars(select(Prediction.run_id).distinct()))
        assert kept == {1, 29, 30, 31}
        pruned = s.get(Run, 10)
        assert pruned.predictions_pruned_at is not None and pruned.checkpoint is None
        assert s.scalar(select(func.count()).select_from(RunLabel).where(RunLabel.run_id == 10)) == 14
        assert s.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == 10)) > 0
        with pytest.raises(QueueError, match="superseded refit"):
            resolve_run(s, 10)
    assert sorted(p.name for p in (root / "checkpoints").glob("*.pt")) == [f"run_{r}.pt" for r in (1, 29, 30, 31)]
    with Project.open(root) as project:
        with pytest.raises(EvaluationError, match="pruned"):
            evaluate_run(project, 10, "val")
        with pytest.raises(RunError, match="pruned"):
            refit(project, 10, JsonEvents(io.StringIO()))


def clustered(rng, centres: np.ndarray, per: int, noise: float = 0.05) -> np.ndarray:
    points = np.repeat(centres, per, axis=0) + noise * rng.standard_normal((len(centres) * per, centres.shape[1]))
    return points.astype(np.float32)


def test_placement_keeps_unmoved_faces_and_carries_moved_ones_to_their_new_neighbours(monkeypatch):
    from core.training import placement

    rng = np.random.default_rng(0)
    centres = np.eye(3, 32, dtype=np.float32)  # three classes, far apart in embedding space
    embeddings = clustered(rng, centres, 20)
    layout_xy = np.repeat(np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32), 20, axis=0)
    layout_xy += rng.standard_normal(layout_xy.shape).astype(np.float32)
    ids = np.arange(100, 160)
    layout = placement.Layout(1, ids, embeddings, {"umap": layout_xy})
    unchanged = placement.place(layout, ids, embeddings)["umap"]
    assert np.allclose(unchanged, layout_xy, atol=1e-4), "the same embeddings keep the same map"

    moved = embeddings.copy()
    moved[0] = centres[1] + 0.01  # the refit moved face 100 into the second class
    new_face = (centres[2] + 0.02)[None, :]  # face 999 was imported after the layout was made
    placed = placement.place(layout, np.append(ids, 999), np.vstack([moved, new_face]))["umap"]
    assert np.hypot(*(placed[0] - [10, 0])) < 3, placed[0]
    assert np.abs(placed[1:60] - layout_xy[1:]).max() < 1.5, "the others barely move"
    assert np.hypot(*(placed[60] - [0, 10])) < 2, placed[60]

    monkeypatch.setattr(placement, "MAX_ANCHORS", 30)  # a large project: a fixed sample of anchors
    monkeypatch.setattr(placement, "NEIGHBOURS", 5)
    monkeypatch.setattr(placement, "REDUCED_DIM", 4)  # wide embeddings: distances in a PCA of them
    again = placement.place(layout, ids, embeddings)["umap"]
    assert np.allclose(again, layout_xy, atol=1e-4)
    assert np.hypot(*(placement.place(layout, ids, moved)["umap"][0] - [10, 0])) < 3
    assert np.array_equal(layout.choose_anchors(np.ones(60, bool)), layout.choose_anchors(np.ones(60, bool)))


def test_priming_the_memory_leaves_nothing_for_the_first_refit_to_load(root):
    memory = RefitMemory()
    with Project.open(root) as project:
        assert memory.prime(project) == 1
        assert memory.layout is not None and memory.layout.run_id == 1
    _, events = run_refit(root, steps=1, memory=memory)
    messages = {e["phase"]: e["message"] for e in events if e["event"] == "phase"}
    assert "loaded already" in messages["encoder"] and "in memory" in messages["features"]
    with Project.open(root) as project, project.session() as s:
        s.get(Run, 1).status = "failed"
        s.get(Run, 2).status = "failed"
    with Project.open(root) as project:
        assert RefitMemory().prime(project) is None, "nothing finished: nothing to prime for"


def test_priming_reads_nothing_for_a_run_that_cannot_be_refitted(root):
    """A finished run without its checkpoint can never be refitted: the warm-up must not encode
    the project's faces for it (on 100,000 uncached faces that took the worker minutes)."""
    with Project.open(root) as project, project.session() as s:
        for run in s.scalars(select(Run)):
            run.checkpoint = None
    memory = RefitMemory()
    with Project.open(root) as project:
        assert memory.prime(project) is None
    assert memory.features is None and memory.encoder is None
