"""The trainer end to end on the demo set with the tiny encoder: every algorithm learns, events
are valid JSON, cancel/resume work, and a killed worker leaves the project usable."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from core.encoders.text import load_descriptions, save_project_descriptions
from core.ingest.demo import DemoSettings, create_demo_project
from core.ssl.algorithms import MethodConfig
from core.store.db import integrity_ok
from core.store.models import Embedding, Label, Metric, Prediction, Projection, Run, RunLabel
from core.store.project import Project
from core.training.checkpoints import load_checkpoint
from core.training.evaluation import evaluate_run
from core.training.events import Event, JsonEvents
from core.training.loop import LoopConfig
from core.training.settings import TrainSettings
from core.training.worker import train

REPO = Path(__file__).resolve().parent.parent
FAST_LOOP = dict(steps=250, batch_size=32, eval_every=50, checkpoint_every=100, log_every=25)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train") / "demo"
    project, _ = create_demo_project(
        root, DemoSettings(train_per_class=40, val_per_class=12, labeled_per_class=15, seed=3)
    )
    project.close()
    return root


def settings(algorithm="sitfer", **loop) -> TrainSettings:
    return TrainSettings(
        algorithm=algorithm,
        encoder="tiny",
        projection="pca",
        strong_views=2,
        method=MethodConfig(instance_warmup=50),
        loop=LoopConfig(**{**FAST_LOOP, **loop}),
    )


class PhaseWatch(JsonEvents):
    """JSON events that remember the run's phase: a stop test counts only the training steps'
    checks (feature extraction asks should_stop too, as often as the cache lacks features)."""

    phase = ""

    def emit(self, event: Event, **fields) -> None:
        if event == Event.PHASE:
            self.phase = str(fields.get("phase", ""))
        super().emit(event, **fields)


def run_in_process(root: Path, config: TrainSettings, events: JsonEvents | None = None, **kwargs):
    stream = io.StringIO()
    if events is not None:
        events.stream = stream
    with Project.open(root) as project:
        outcome = train(project, config, events or JsonEvents(stream), **kwargs)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return outcome, events


@pytest.mark.parametrize("algorithm", ["supervised", "fixmatch", "sitfer", "leaf", "dta-snl"])
def test_each_algorithm_learns_and_writes_its_results(demo_root, algorithm):
    outcome, events = run_in_process(demo_root, settings(algorithm))
    assert outcome.status == "finished", events[-1]
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["phase", "started"] and events[0]["phase"] == "starting" and kinds[-1] == "finished"
    maps = [e for e in events if e["event"] == "map"]
    assert [(e["method"], e["final"]) for e in maps] == [("pca", True)], "the map is announced once written"
    # Chance is 1/7 = 0.14 on the demo val split (84 faces); a random-init encoder's features
    # carry less than a pretrained one's, so "well above chance" is twice chance here.
    assert outcome.metrics["val_fused_accuracy"] > 0.29, outcome.metrics
    assert outcome.metrics["val_accuracy"] > 0.29, outcome.metrics
    with Project.open(demo_root) as project, project.session() as s:
        run_id = outcome.run_id
        n_faces = 7 * 52
        assert s.scalar(select(func.count()).select_from(Prediction).where(Prediction.run_id == run_id)) == n_faces
        assert s.scalar(select(func.count()).select_from(Embedding).where(Embedding.run_id == run_id)) == n_faces
        assert s.scalar(select(func.count()).select_from(Projection).where(Projection.run_id == run_id)) == n_faces
        # The run recorded the labeled set it trained on: the current train labels, never hidden truth.
        assert s.scalar(select(func.count()).select_from(RunLabel).where(RunLabel.run_id == run_id)) == 7 * 15
        prediction = s.scalar(select(Prediction).where(Prediction.run_id == run_id).limit(1))
        assert abs(sum(prediction.p_fused) - 1) < 1e-3
        if algorithm == "sitfer":
            assert prediction.p_text is not None and prediction.p_instance is not None
        if algorithm == "leaf":  # its own output: the positive set, top class first among them
            assert prediction.extra["positive_set"] and prediction.pseudo_label in prediction.extra["positive_set"]
        else:
            assert prediction.extra is None
        names = set(s.scalars(select(Metric.name).where(Metric.run_id == run_id)))
        assert {"loss_sup", "val_accuracy", "threshold_fear"} <= names
        if algorithm != "supervised":
            assert "mask_rate" in names
        result = evaluate_run(project, run_id, "val")
    assert set(result) >= {"classifier", "fused"}
    assert set(result["fused"]) >= {"accuracy", "balanced_accuracy", "per_class", "confusion"}


def test_cancel_saves_a_checkpoint_and_resume_finishes(demo_root):
    watch = PhaseWatch()
    calls = {"n": 0}

    def stop_after_60_steps():
        calls["n"] += watch.phase == "training"
        return calls["n"] >= 60

    outcome, events = run_in_process(demo_root, settings(), watch, should_stop=stop_after_60_steps)
    assert outcome.status == "cancelled" and events[-1]["event"] == "cancelled"
    stopped_at = events[-1]["step"]
    assert 55 <= stopped_at <= 60, stopped_at
    with Project.open(demo_root) as project, project.session() as s:
        run = s.get(Run, outcome.run_id)
        assert run.status == "cancelled" and project.resolve_path(run.checkpoint).is_file()
    resumed, events = run_in_process(demo_root, settings(), resume=outcome.run_id)
    assert resumed.status == "finished" and resumed.run_id == outcome.run_id
    assert any("resumed run" in e.get("message", "") and f"step {stopped_at}" in e["message"] for e in events)
    with Project.open(demo_root) as project, project.session() as s:
        assert s.scalar(select(func.max(Metric.step)).where(Metric.run_id == outcome.run_id)) == FAST_LOOP["steps"]


def test_a_moved_project_resumes_a_run_that_used_its_own_descriptions(demo_root, tmp_path):
    root = tmp_path / "before"
    shutil.copytree(demo_root, root)
    save_project_descriptions(root, load_descriptions())
    calls = {"n": 0}

    def stop_after_30_steps():
        calls["n"] += 1
        return calls["n"] >= 30

    outcome, _ = run_in_process(root, settings(), should_stop=stop_after_30_steps)
    assert outcome.status == "cancelled"
    with Project.open(root) as project, project.session() as s:
        assert s.get(Run, outcome.run_id).config["descriptions"] == "descriptions.json"  # relative to the project
    moved = tmp_path / "moved élan"
    shutil.move(root, moved)
    resumed, events = run_in_process(moved, settings(), resume=outcome.run_id)
    assert resumed.status == "finished", events[-1]


def test_a_run_without_labels_fails_clearly(tmp_path):
    root = tmp_path / "p"
    project, _ = create_demo_project(root, DemoSettings(train_per_class=4, val_per_class=1, labeled_per_class=0))
    project.close()
    outcome, events = run_in_process(root, settings())
    assert outcome.status == "failed"
    assert "no labeled faces" in events[-1]["error"]


def cli_train(root: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "main.py"),
            "train",
            str(root),
            "--encoder",
            "tiny",
            "--events",
            "json",
            "--projection",
            "pca",
            "--strong-views",
            "2",
            "--batch-size",
            "32",
            "--log-every",
            "10",
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_training(proc: subprocess.Popen) -> list[dict]:
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "metrics":  # training is under way
            return seen
    raise AssertionError(f"worker ended before training: {seen} {proc.stderr.read()}")


def test_cli_events_are_json_and_sigterm_cancels(demo_root):
    proc = cli_train(demo_root, "--steps", "100000")
    seen = wait_for_training(proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    seen += [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    assert proc.returncode == 130, err
    kinds = [e["event"] for e in seen if e["event"] != "phase"]
    assert kinds[0] == "started" and kinds[-1] == "cancelled" and "metrics" in kinds
    run_id = next(e["run"] for e in seen if e["event"] == "started")
    with Project.open(demo_root) as project, project.session() as s:
        run = s.get(Run, run_id)
        assert run.status == "cancelled" and project.resolve_path(run.checkpoint).is_file()


def test_killed_worker_is_marked_failed_and_the_project_stays_usable(demo_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    proc = cli_train(root, "--steps", "100000")
    seen = wait_for_training(proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with Project.open(root) as project:
        assert integrity_ok(project.engine)
        with project.session() as s:
            run = s.get(Run, next(e["run"] for e in seen if e["event"] == "started"))
            assert run.status == "failed" and "ended without finishing" in run.error
            assert s.scalar(select(func.count()).select_from(Label)) > 0
    outcome, _ = run_in_process(root, settings("supervised", steps=30))
    assert outcome.status == "finished"


def test_cli_text_mode_reports_progress_readably(demo_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "main.py"),
            "train",
            str(root),
            "--encoder",
            "tiny",
            "--algorithm",
            "supervised",
            "--steps",
            "40",
            "--log-every",
            "20",
            "--eval-every",
            "20",
            "--projection",
            "pca",
            "--strong-views",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "started: run" in proc.stderr and "step 40: " in proc.stderr and "finished: run" in proc.stderr
    evaluation = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "evaluate", str(root), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(evaluation.stdout)
    assert report["split"] == "val" and 0 <= report["fused"]["accuracy"] <= 1
    runs = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "runs", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "finished" in runs.stdout and "supervised" in runs.stdout


def test_bad_training_settings_are_refused_before_a_run_starts(demo_root):
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "train", str(demo_root), "--encoder", "tiny", "--lr", "-1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--lr -1: must be a positive number" in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "train", str(demo_root), "--encoder", "resnet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown encoder 'resnet'" in proc.stderr


def test_finetune_mode_trains_the_encoder_and_writes_predictions(demo_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    config = settings("sitfer", steps=30, eval_every=15, log_every=15, batch_size=16)
    config.mode, config.loader_workers = "finetune", 0
    from core.encoders import get_encoder

    before = [p.detach().clone() for p in get_encoder("tiny").image_tower.parameters()]
    outcome, events = run_in_process(root, config)
    assert outcome.status == "finished", events[-1]
    with Project.open(root) as project, project.session() as s:
        run = s.get(Run, outcome.run_id)
        assert run.mode == "finetune"
        assert s.scalar(select(func.count()).select_from(Prediction).where(Prediction.run_id == run.id)) == 7 * 52
        state = load_checkpoint(project.resolve_path(run.checkpoint))
    tower = {k: v for k, v in state["model"].items() if k.startswith("tower.")}
    assert tower, "the checkpoint holds the encoder's weights"
    after = [v for k, v in tower.items() if v.dtype.is_floating_point and "running" not in k]
    assert any(not torch.equal(a, b) for a, b in zip(after, [p for p in before])), "the encoder trained"


def test_torchrun_two_processes_make_one_run(demo_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    with Project.open(root) as project, project.session() as s:
        runs_before = s.scalar(select(func.count()).select_from(Run))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(REPO / "main.py"),
            "train",
            str(root),
            "--mode",
            "finetune",
            "--encoder",
            "tiny",
            "--steps",
            "20",
            "--batch-size",
            "8",
            "--log-every",
            "10",
            "--eval-every",
            "10",
            "--projection",
            "pca",
            "--loader-workers",
            "0",
            "--events",
            "json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("started") == 1, "only rank 0 speaks"
    assert events[-1]["event"] == "finished"
    with Project.open(root) as project, project.session() as s:
        runs = s.scalars(select(Run).order_by(Run.id)).all()
        assert (
            len(runs) == runs_before + 1
            and runs[-1].status == "finished"
            and runs[-1].id == next(e["run"] for e in events if e["event"] == "started")
        )
        assert s.scalar(select(func.count()).select_from(Prediction).where(Prediction.run_id == runs[-1].id)) == 7 * 52


def test_a_head_run_with_face_geometry_reports_faces_without_a_mesh_and_refits_and_rescores(demo_root, tmp_path):
    from core.encoders.text import load_descriptions
    from core.training.geometry import GEOMETRY_DIM, LandmarkCache
    from core.training.refit import refit
    from core.training.rescore import rescore_text_level

    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    config = settings("sitfer", steps=60, eval_every=30, checkpoint_every=60, log_every=20)
    config.geometry = True
    outcome, events = run_in_process(root, config)
    assert outcome.status == "finished", events[-1]
    info = [e["message"] for e in events if e["event"] == "info" and "face mesh" in e["message"]]
    from core.training.geometry import without_mesh_message

    assert len(info) == 1
    with Project.open(root) as project:
        with project.session() as s:
            missing = s.scalar(
                select(Metric.value).where(Metric.run_id == outcome.run_id, Metric.name == "faces_without_mesh")
            )
            total = s.scalar(select(func.count()).select_from(Prediction).where(Prediction.run_id == outcome.run_id))
            run = s.get(Run, outcome.run_id)
            assert run.config["geometry"] is True
        assert missing is not None and 0 <= missing <= total
        assert info[0] == without_mesh_message(int(missing))
        assert list(LandmarkCache(project.cache_dir("features")).folder.glob("shard_*.npz"))
        state = load_checkpoint(project.cache_dir("checkpoints") / f"run_{outcome.run_id}.pt")
        first = next(v for k, v in state["ema"].items() if k.endswith("weight") and v.dim() == 2)
        from core.encoders import get_encoder

        assert first.shape[1] == get_encoder("tiny").image_dim + GEOMETRY_DIM  # image features, then geometry
        # A refit reads the same inputs; re-scoring the text level builds the same head.
        stream = io.StringIO()
        refitted = refit(project, outcome.run_id, JsonEvents(stream), steps=5)
        assert refitted.status == "finished", stream.getvalue()[-500:]
        rescore_text_level(project, outcome.run_id, load_descriptions())


def test_finetune_mode_says_it_leaves_the_geometry_out(demo_root, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    config = settings("supervised", steps=4, eval_every=4, checkpoint_every=4, log_every=2)
    config.mode, config.geometry, config.loader_workers = "finetune", True, 0
    outcome, events = run_in_process(root, config)
    assert outcome.status == "finished", events[-1]
    assert any("head mode only" in e.get("message", "") for e in events if e["event"] == "info")
