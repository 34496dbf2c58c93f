"""Checkpoints are read with torch's weights-only loader: a tampered, foreign, truncated or
older checkpoint is refused with a message naming the file, and a pickled payload in it never
runs (issue 19, item 5). A head-mode run resumed from its checkpoint ends where one that was
never stopped ends."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from core.encoders.text import load_descriptions
from core.ingest.demo import DemoSettings, create_demo_project
from core.ssl.config import MethodConfig
from core.store.models import Prediction, Run
from core.store.project import Project
from core.training.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from core.training.events import JsonEvents
from core.training.rescore import RescoreError, rescore_text_level
from core.training.settings import LoopConfig, TrainSettings
from core.training.worker import train
from tests.studio_runs import project_copy

REPO = Path(__file__).resolve().parent.parent
FINISHED, CANCELLED = 1, 2  # the template's runs


class Payload:
    """What an attacker hides in a checkpoint: unpickling it runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def settings(steps: int = 20) -> TrainSettings:
    return TrainSettings(
        algorithm="sitfer",
        encoder="tiny",
        projection="pca",
        strong_views=2,
        method=MethodConfig(instance_warmup=5),
        loop=LoopConfig(steps=steps, batch_size=8, eval_every=5, log_every=5, checkpoint_every=5),
    )


def run(root: Path, config: TrainSettings, **kwargs):
    with Project.open(root) as project:
        return train(project, config, JsonEvents(io.StringIO()), **kwargs)


def stop_after(calls: int):
    seen = {"n": 0}

    def should_stop() -> bool:
        seen["n"] += 1
        return seen["n"] > calls

    return should_stop


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A small demo project with a finished sitfer run (1) and a cancelled one (2)."""
    root = tmp_path_factory.mktemp("checkpoints") / "demo"
    project, _ = create_demo_project(
        root, DemoSettings(train_per_class=6, val_per_class=2, labeled_per_class=3, seed=3)
    )
    project.close()
    assert run(root, settings()).status == "finished"
    assert run(root, settings(), should_stop=stop_after(8)).status == "cancelled"
    return root


@pytest.fixture
def root(template, tmp_path) -> Path:
    return project_copy(template, tmp_path)


def checkpoint_of(root: Path, run_id: int) -> Path:
    with Project.open(root) as project, project.session() as session:
        return project.resolve_path(session.get(Run, run_id).checkpoint)


def tamper(path: Path, marker: Path) -> None:
    """The real checkpoint with a payload added, and proof that the payload is live."""
    state = torch.load(path, weights_only=True)
    state["notes"] = Payload(marker)
    torch.save(state, path)
    torch.load(path, weights_only=False)  # what loading it unsafely does
    assert marker.exists(), "the payload runs when the checkpoint is unpickled"
    marker.unlink()


def test_resuming_from_a_tampered_checkpoint_refuses_it_and_runs_nothing(root, tmp_path):
    checkpoint, marker = checkpoint_of(root, CANCELLED), tmp_path / "payload-ran"
    tamper(checkpoint, marker)
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "train", str(root), "--resume", str(CANCELLED), "--events", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not marker.exists(), "the checkpoint's payload ran"
    assert proc.returncode != 0
    failed = [json.loads(line) for line in proc.stdout.splitlines()][-1]
    assert failed["event"] == "failed"
    assert f"{checkpoint} is not a FER studio checkpoint or was modified" in failed["error"]
    assert "posix.system" in failed["error"] and "it was not loaded" in failed["error"]
    with Project.open(root) as project, project.session() as session:
        stored = session.get(Run, CANCELLED)
        assert stored.status == "failed" and str(checkpoint) in stored.error


def fused(project: Project) -> list:
    with project.session() as session:
        return session.scalars(
            select(Prediction.p_fused).where(Prediction.run_id == FINISHED).order_by(Prediction.image_id)
        ).all()


def test_rescoring_from_a_tampered_checkpoint_refuses_it_and_writes_nothing(root, tmp_path):
    checkpoint, marker = checkpoint_of(root, FINISHED), tmp_path / "payload-ran"
    tamper(checkpoint, marker)
    with Project.open(root) as project:
        before = fused(project)
        with pytest.raises(RescoreError, match="is not a FER studio checkpoint or was modified") as refused:
            rescore_text_level(project, FINISHED, {**load_descriptions(), "fear": ["eyes wide with terror"]})
        after = fused(project)
    assert not marker.exists(), "the checkpoint's payload ran"
    assert str(checkpoint) in str(refused.value)
    assert after == before


def test_foreign_truncated_and_older_checkpoints_are_refused_with_the_file_named(root):
    real = checkpoint_of(root, FINISHED)
    state = torch.load(real, weights_only=True)
    cases = {}
    cases["foreign.pt"] = {"weight": torch.zeros(3)}  # another program's state dict
    older = {k: v for k, v in state.items() if k != "format"}
    older["train_face_ids"] = older["train_face_ids"].numpy()  # what earlier versions wrote
    cases["older.pt"] = older
    for name, content in cases.items():
        torch.save(content, root / name)
    (root / "truncated.pt").write_bytes(real.read_bytes()[:5000])
    (root / "text.pt").write_text("not a checkpoint")
    for name in ("foreign.pt", "older.pt", "truncated.pt", "text.pt"):
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(root / name)
        message = str(refused.value)
        assert message.startswith(f"{root / name} is not a FER studio checkpoint or was modified: "), message
        assert "start a new run" in message
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(root / "missing.pt")


def test_a_checkpoint_is_refused_when_written_if_it_holds_what_the_safe_loader_refuses(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint\['ids'\] is a numpy.ndarray"):
        save_checkpoint(tmp_path / "c.pt", {"ids": np.arange(3)})
    with pytest.raises(CheckpointError, match=r"checkpoint\['x'\]\['lr'\] is a numpy.float64"):
        save_checkpoint(tmp_path / "c.pt", {"x": {"lr": np.float64(0.1)}})
    assert not (tmp_path / "c.pt").exists()


@pytest.fixture
def one_thread():
    """torch on one thread: with two, a matrix product's sums may be split differently from run to
    run (measured with the face geometry's 1,313 inputs), which is not what this test is about."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_saved_checkpoint_loads_safely_and_a_resumed_run_ends_as_if_never_stopped(root, one_thread):
    whole = run(root, settings())
    stopped = run(root, settings(), should_stop=stop_after(8))
    assert stopped.status == "cancelled"
    assert run(root, settings(), resume=stopped.run_id).status == "finished"
    a, b = load_checkpoint(checkpoint_of(root, whole.run_id)), load_checkpoint(checkpoint_of(root, stopped.run_id))
    assert a["step"] == b["step"] == 20
    for name in ("model", "ema"):
        assert all(torch.equal(a[name][key], b[name][key]) for key in a[name]), name
