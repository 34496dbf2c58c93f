"""The head-mode feature cache: views drawn ahead of the engine, ONNX Runtime against torch,
shards shared between processes, the `features` command and `fill_cache`."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.encoders import get_encoder
from core.encoders.onnx_engine import (
    EXACT_TOLERANCE,
    OnnxImageEngine,
    TorchImageEngine,
    engine_files,
    image_engine,
)
from core.training import features as features_module
from core.training.data import FaceTable
from core.training.events import JsonEvents
from core.training.features import FeatureCache, ShardClaims, fill_cache
from tests.imagegen import face_like, save

REPO = Path(__file__).resolve().parent.parent


def face_table(folder: Path, count: int, id_step: int = 1) -> FaceTable:
    paths = [save(face_like(100 + i, size=48, mode="RGB"), folder / f"{i}.png") for i in range(count)]
    return FaceTable(
        ids=np.arange(1, count + 1, dtype=np.int64) * id_step,
        splits=np.array(["train"] * count, dtype=object),
        labels=np.full(count, -1),
        paths=paths,
        crop_paths=[None] * count,
        boxes=[None] * count,
        angles=[None] * count,
    )


class CountingEngine:
    name = "counting"

    def __init__(self, encoder):
        self.inner = TorchImageEngine(encoder)
        self.images = 0

    def __call__(self, batch):
        self.images += len(batch)
        return self.inner(batch)


@pytest.fixture(scope="module")
def tiny():
    return get_encoder("tiny", device="cpu")


def test_views_drawn_ahead_give_the_same_cache(tiny, tmp_path):
    faces = face_table(tmp_path / "faces", 150)
    inline, broken = FeatureCache(tmp_path / "a", tiny, 2, prefetch=0).load(faces)
    ahead = FeatureCache(tmp_path / "b", tiny, 2, prefetch=2)
    pipelined, _ = ahead.load(faces)
    assert not broken and inline.shape == (150, 4, tiny.image_dim)
    assert np.array_equal(inline, pipelined)  # views seeded per face, drawn in order by one thread
    again = FeatureCache(tmp_path / "b", tiny, 2, engine=CountingEngine(tiny))
    assert np.array_equal(again.load(faces)[0], pipelined) and again.engine().images == 0


def test_a_stop_keeps_the_shards_written(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(features_module, "SHARD", 64)
    monkeypatch.setattr(features_module, "ENCODE_BATCH", 16)
    faces = face_table(tmp_path / "faces", 200)
    cache = FeatureCache(tmp_path / "c", tiny, 1)
    seen = []
    with pytest.raises(InterruptedError):
        cache.load(faces, progress=lambda done, total: seen.append(done), should_stop=lambda: len(seen) >= 5)
    shards = sorted(p.name for p in cache.folder.glob("shard_*.npz"))
    assert shards == ["shard_000000.npz"]  # ids 1-63: written after its 4th batch; the 2nd shard was cut short
    assert not list(cache.folder.glob(".shard_*.claim"))  # claims are let go on the way out
    counting = CountingEngine(tiny)
    FeatureCache(tmp_path / "c", tiny, 1, engine=counting).load(faces)
    assert counting.images == (200 - 63) * 3


def test_a_shard_another_process_computes_is_read_back_not_computed(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(features_module, "CLAIM_POLL_S", 0.05)
    faces = face_table(tmp_path / "faces", 40)
    reference, _ = FeatureCache(tmp_path / "ref", tiny, 1).load(faces)
    cache = FeatureCache(tmp_path / "shared", tiny, 1, engine=CountingEngine(tiny))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = cache.folder / ".shard_000000.claim"
        cache.folder.mkdir(parents=True)
        claim.write_text(str(other.pid))  # the other process is computing shard 0

        def other_finishes():
            time.sleep(0.5)
            shutil.copy(FeatureCache(tmp_path / "ref", tiny, 1)._shard_path(0), cache._shard_path(0))
            claim.unlink()

        helper = threading.Thread(target=other_finishes)
        helper.start()
        got, _ = cache.load(faces)
        helper.join()
    finally:
        other.kill()
        other.wait()
    assert np.array_equal(got, reference) and cache.engine().images == 0


def test_claims_of_dead_processes_are_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".shard_000003.claim").write_text(str(dead.pid))
    claims = ShardClaims(tmp_path)
    assert claims.take(3) and (tmp_path / ".shard_000003.claim").read_text() == str(os.getpid())
    rival = ShardClaims(tmp_path)
    assert not rival.take(3)  # held by this (live) process
    claims.release_all()
    assert rival.take(3)
    rival.release_all()


# ---- ONNX Runtime ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def offline():
    return get_encoder("offline", device="cpu")


def test_onnx_engine_matches_torch_and_is_built_once(offline, tmp_path):
    batch = offline.preprocess([face_like(i, 48, "RGB") for i in range(6)]).numpy()
    engine = image_engine(offline, tmp_path, threads=1)
    assert isinstance(engine, OnnxImageEngine)
    expected = TorchImageEngine(offline)(batch)
    got = engine(batch)
    assert got.shape == expected.shape == (6, 1008)
    assert np.abs(got - expected).max() <= EXACT_TOLERANCE  # the cache (float16) cannot tell them apart
    model, sidecar = engine_files(tmp_path)
    built = model.stat().st_mtime_ns
    record = json.loads(sidecar.read_text())
    assert record["max_abs_difference"] <= EXACT_TOLERANCE and len(record["sha256"]) == 64
    image_engine(offline, tmp_path, threads=1)
    assert model.stat().st_mtime_ns == built  # reused
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")  # damaged or replaced
    rebuilt = image_engine(offline, tmp_path, threads=1)
    assert model.stat().st_mtime_ns != built
    assert np.abs(rebuilt(batch) - expected).max() <= EXACT_TOLERANCE


def test_without_onnxruntime_torch_computes_and_says_so(offline, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING):
        engine = image_engine(offline, tmp_path)
    assert isinstance(engine, TorchImageEngine)
    assert "ONNX Runtime unavailable" in caplog.text and "torch" in caplog.text
    with pytest.raises(ImportError):
        image_engine(offline, tmp_path, prefer="onnx")
    assert isinstance(image_engine(get_encoder("tiny", device="cpu"), tmp_path), TorchImageEngine)


# ---- fill_cache and the command ----------------------------------------------------------
@pytest.fixture(scope="module")
def small_project(tmp_path_factory) -> Path:
    from core.ingest.demo import DemoSettings, create_demo_project

    root = tmp_path_factory.mktemp("features") / "demo"
    project, _ = create_demo_project(
        root, DemoSettings(train_per_class=12, val_per_class=4, labeled_per_class=4, seed=5)
    )
    project.close()
    return root


def test_fill_cache_reports_progress_and_then_has_nothing_to_do(small_project):
    from core.store.project import Project

    stream = io.StringIO()
    with Project.open(small_project) as project:
        first = fill_cache(project, "tiny", JsonEvents(stream), strong_views=1)
        second = fill_cache(project, "tiny", strong_views=1)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and "progress" in kinds
    progress = [e for e in events if e["event"] == "progress"]
    assert all(e["phase"] == "features" and "eta_s" in e for e in progress)
    assert progress[-1]["step"] == progress[-1]["total"] == first.faces == 112
    assert first.status == "finished" and first.computed == 112 and second.computed == 0


def test_fill_cache_computes_the_face_meshes_where_training_reads_the_geometry(tmp_path):
    from core.ingest.demo import DemoSettings, create_demo_project
    from core.training.geometry import LandmarkCache

    project, _ = create_demo_project(
        tmp_path / "demo", DemoSettings(train_per_class=4, val_per_class=2, labeled_per_class=2, seed=5)
    )
    with project:
        without = fill_cache(project, "tiny", strong_views=1, geometry=False)
        folder = LandmarkCache(project.cache_dir("features")).folder
        assert without.without_mesh is None and not folder.exists()
        stream = io.StringIO()
        outcome = fill_cache(project, "tiny", JsonEvents(stream), strong_views=1, geometry=True)
    assert outcome.status == "finished" and 0 <= outcome.without_mesh <= outcome.faces
    assert list(folder.glob("shard_*.npz"))
    finished = json.loads(stream.getvalue().splitlines()[-1])
    assert finished["event"] == "finished" and finished["without_mesh"] == outcome.without_mesh


@pytest.mark.slow
def test_features_command_json_events_and_sigterm(tmp_path):
    from core.ingest.demo import DemoSettings, create_demo_project

    root = tmp_path / "demo"  # 5 batches: a stop after the first leaves some
    create_demo_project(root, DemoSettings(train_per_class=40, val_per_class=4, labeled_per_class=4, seed=6))[0].close()
    env = {**os.environ, "FER_STUDIO_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "main.py", "features", str(root), "--strong-views", "0", "--events", "json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "progress":
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    seen += [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 130, err
    assert seen[0]["event"] == "started" and seen[0]["engine"] == "onnxruntime"
    assert seen[-1]["event"] == "cancelled" and "kept" in seen[-1]["message"]
    done = subprocess.run(
        [sys.executable, "main.py", "features", str(root), "--strong-views", "0", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "308 faces cached in all" in done.stderr
    bad = subprocess.run(
        [sys.executable, "main.py", "features", str(root), "--strong-views", "99"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--strong-views 99" in bad.stderr
