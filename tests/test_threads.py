"""Thread discipline: each process's thread plan, applied before torch starts its pools, in the
worker commands, the studio's workers, the importer's processes and UMAP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core import threads
from core.threads import (
    THREADS_ENV,
    busy_cores,
    child_environment,
    plan_threads,
    studio_worker_threads,
    thumbnail_threads,
)

REPO = Path(__file__).resolve().parent.parent


def run_python(code: str, **env: str) -> str:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in (THREADS_ENV, *threads.POOL_ENV, "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_the_studio_s_count_wins(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    plan = plan_threads("worker", busy=1.0)
    assert plan.threads == 3 and THREADS_ENV in plan.describe()
    monkeypatch.setenv(THREADS_ENV, "none")
    with pytest.raises(ValueError, match=f"{THREADS_ENV}='none'"):
        plan_threads("worker")
    with pytest.raises(ValueError, match="unknown thread role"):
        plan_threads("trainer")


def test_a_worker_leaves_reserved_and_busy_cores_alone(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert plan_threads("worker", busy=0.0).threads == 8
    assert plan_threads("worker", reserved=2, busy=0.0).threads == 6
    busy = plan_threads("worker", busy=1.0)  # one other busy process: one core less
    assert busy.threads == 7 and "busy with other processes" in busy.reason
    assert plan_threads("worker", busy=2.6).threads == 5
    assert plan_threads("worker", busy=0.1).threads == 8  # a little background work is not a core
    assert plan_threads("worker", reserved=4, busy=7.5).threads == 1  # never below one
    assert plan_threads("studio").threads == 1


def test_a_busy_process_is_seen():
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat here")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert busy_cores(0.5) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()


def test_a_process_s_own_threads_are_not_other_work():
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat here")
    baseline = busy_cores(0.5)  # whatever else runs on this machine now
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(1000))

    helper = threading.Thread(target=spin, daemon=True)
    helper.start()
    try:
        # the helper keeps a whole core busy (GIL held in a tight loop): counted, it would add about 1
        assert busy_cores(0.5) < baseline + 0.5, "a thread of this process counted as another process's work"
    finally:
        stop.set()
        helper.join()


def test_studio_shares():
    assert studio_worker_threads(1, cores=2) == 1  # the GUI keeps a core
    assert studio_worker_threads(1, cores=8) == 7
    assert studio_worker_threads(2, cores=8) == 3  # a training and a feature job at once
    assert studio_worker_threads(3, cores=2) == 1
    assert thumbnail_threads(cores=2) == 1 and thumbnail_threads(cores=16) == 4
    env = child_environment(2, base={"PATH": "/bin"})
    assert env[THREADS_ENV] == "2" and all(env[name] == "2" for name in threads.POOL_ENV)
    assert env["GOMP_SPINCOUNT"] == "10000" and "OMP_WAIT_POLICY" not in env and env["PATH"] == "/bin"
    single = child_environment(1, base={})
    assert single["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in single  # no team to wait for


def test_configure_threads_sets_every_pool_loaded_or_not():
    code = (
        "import json, cv2, numpy, torch\n"
        "from core.threads import configure_threads\n"
        "plan = configure_threads('worker')\n"
        "import os, threadpoolctl\n"
        "blas = [p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']\n"
        "print(json.dumps([plan.threads, torch.get_num_threads(), cv2.getNumThreads(), blas,"
        " os.environ['OMP_NUM_THREADS'], os.environ['NUMBA_NUM_THREADS'], os.environ['OMP_WAIT_POLICY']]))"
    )
    plan, torch_threads, cv2_threads, blas, omp, numba, policy = json.loads(run_python(code, **{THREADS_ENV: "1"}))
    assert plan == torch_threads == cv2_threads == 1 and all(n == 1 for n in blas)
    assert omp == numba == "1" and policy == "PASSIVE"


@pytest.mark.parametrize("command", ["train", "features"])
def test_worker_commands_plan_threads_before_torch_loads(command, tmp_path):
    code = (
        "import json, sys\n"
        "import core.threads as t\n"
        "seen = []\n"
        "real = t.configure_threads\n"
        "def spy(role, **kw):\n"
        "    seen.append([role, 'torch' in sys.modules])\n"
        "    return real(role, **kw)\n"
        "t.configure_threads = spy\n"
        "from core.cli import main\n"
        f"main([{command!r}, {str(tmp_path / 'missing')!r}])\n"
        "print(json.dumps(seen))"
    )
    assert json.loads(run_python(code, **{THREADS_ENV: "1"})) == [["worker", False]]


def test_import_workers_run_one_thread_each():
    code = (
        "import cv2\n"
        "from core.ingest.importer import _init_worker\n"
        "cv2.setNumThreads(4)\n"
        "_init_worker(None)\n"
        "print(cv2.getNumThreads())"
    )
    assert run_python(code) == "1"


def test_umap_runs_on_the_process_s_threads():
    # numba started with a thread per core (loaded before any plan); the map narrows it
    code = (
        "import numpy as np, numba\n"
        "from core.projection import umap_2d\n"
        "umap_2d(np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))\n"
        "print(numba.get_num_threads())"
    )
    assert run_python(code, **{THREADS_ENV: "1"}) == "1"
