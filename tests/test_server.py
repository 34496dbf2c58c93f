"""The warm worker (`main.py serve`) as the studio runs it: a real subprocess on a small demo
project with the tiny encoder, commands on stdin, JSON events on stdout."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.store.models import Run
from core.store.project import Project
from core.store.runs import reap_dead_runs
from core.training.events import Event
from tests.studio_runs import FACES, make_demo, project_copy, quick_settings

REPO = Path(__file__).resolve().parent.parent
EVENT_TIMEOUT_S = 240  # a loaded 2-core machine trains the tiny demo in 5-20 s


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("serve") / "demo")


@pytest.fixture
def demo(demo_template, tmp_path) -> Path:
    return project_copy(demo_template, tmp_path)


class Server:
    """`main.py serve` with its stdout read line by line in a thread."""

    def __init__(self, root: Path, *extra: str):
        env = dict(os.environ, FER_STUDIO_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), "serve", str(root), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, command: dict | str) -> None:
        self.proc.stdin.write((command if isinstance(command, str) else json.dumps(command)) + "\n")
        self.proc.stdin.flush()

    def next_event(self) -> dict:
        line = self.lines.get(timeout=EVENT_TIMEOUT_S)
        assert line is not None, f"the server's output ended; stderr:\n{self.proc.stderr.read()[-3000:]}"
        event = json.loads(line)  # stdout carries nothing but events
        self.seen.append(event)
        return event

    def wait_for(self, name: str, **fields) -> dict:
        while True:
            event = self.next_event()
            if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
                return event

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("serve-trained") / "demo", runs=("sitfer",))


@pytest.fixture
def server(demo):
    started = Server(demo, "--warm-up", "none")
    yield started
    started.close()


def run_status(root: Path, run_id: int) -> str:
    project = Project.open(root)
    try:
        with project.session() as session:
            reap_dead_runs(session)
        with project.session() as session:
            return session.get(Run, run_id).status
    finally:
        project.close()


def test_bad_commands_are_error_events_and_the_server_lives_on(server, demo):
    ready = server.wait_for("ready")
    assert ready["project"] == str(demo) and "train" in ready["commands"] and "refit" in ready["commands"]
    assert "1 compute thread" in ready["threads"]
    for line, named in (
        ("this is not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ({"id": 2, "command": "fly"}, "unknown command 'fly'"),
        ({"id": 3}, 'no "command"'),
        ({"id": 9, "command": ["train"]}, "unknown command"),
        ({"id": 4, "command": "train", "settings": {"algorithm": "nope"}}, "nope"),
        ({"id": 5, "command": "train", "settings": {"colour": "red"}}, "colour"),
        ({"id": 6, "command": "train", "settings": "fast"}, "must be an object"),
        ({"id": 7, "command": "refit", "run": "last"}, "run id"),
        ({"id": 10, "command": "features", "engine": "gpu"}, "engine"),
        ({"id": 11, "command": "features", "strong_views": -1}, "strong_views"),
        ({"id": 12, "command": "features", "encoder": "nope"}, "nope"),
    ):
        server.send(line)
        error = server.wait_for("error")
        assert named in error["error"], (line, error)
        if isinstance(line, dict) and "id" in line:
            assert error["id"] == line["id"]
    server.send({"id": 8, "command": "ping"})
    assert server.wait_for("pong")["id"] == 8
    server.send({"command": "shutdown"})
    assert server.wait_for("exiting")["clean"]
    assert server.proc.wait(60) == 0


def test_train_events_carry_the_command_id_and_a_second_job_is_refused(server, demo):
    server.wait_for("ready")
    settings = quick_settings(steps=30).to_dict()
    server.send({"id": 11, "command": "train", "settings": settings})
    assert server.wait_for("busy")["id"] == 11
    server.send({"id": 12, "command": "train", "settings": settings})
    assert "job 11 (train) is still running" in server.wait_for("error", id=12)["error"]
    idle = server.wait_for("idle", id=11)
    assert idle["status"] == "finished" and idle["command"] == "train"
    job_events = [e for e in server.seen if e["event"] in ("started", "progress", "metrics", "finished")]
    assert {e["event"] for e in job_events} == {"started", "progress", "metrics", "finished"}
    assert {e["event"] for e in server.seen} <= set(Event), "every event name is core.training.events.Event's"
    assert all(e["id"] == 11 for e in job_events)
    assert run_status(demo, idle["run"]) == "finished"

    # The encoder stays loaded for the next head-mode job.
    server.send({"id": 13, "command": "ping"})
    assert server.wait_for("pong", id=13)["encoders"] == ["tiny@cpu"]


def test_refit_writes_a_run_of_its_parent_and_keeps_its_memory_warm(trained_template, tmp_path):
    root = project_copy(trained_template, tmp_path)
    server = Server(root, "--warm-up", "refit")
    try:
        server.wait_for("ready")
        server.send({"id": 40, "command": "ping"})  # answered at once, whatever the warm-up does
        server.wait_for("pong", id=40)
        assert server.wait_for("warm", part="refit")["run"] == 1
        server.send({"id": 41, "command": "refit", "run": 404})
        assert "no run 404" in server.wait_for("failed", id=41)["error"]
        assert server.wait_for("idle", id=41)["status"] == "failed"
        for request_id in (42, 43):
            server.send({"id": request_id, "command": "refit", "run": 1, "steps": 10})
            idle = server.wait_for("idle", id=request_id)
            assert idle["status"] == "finished" and idle["command"] == "refit"
            project = Project.open(root)
            try:
                with project.session() as session:
                    run = session.get(Run, idle["run"])
                    assert (run.kind, run.parent_run_id, run.status) == ("refit", 1, "finished")
            finally:
                project.close()
        for request_id in (42, 43):  # the warm-up left the encoder and the features in memory
            phases = [e["message"] for e in server.seen if e["event"] == "phase" and e.get("id") == request_id]
            assert any("loaded already" in m for m in phases) and any("in memory" in m for m in phases), phases
        server.send({"id": 44, "command": "ping"})
        assert server.wait_for("pong", id=44)["refit_memory"]
        assert {e["event"] for e in server.seen} <= set(Event)
    finally:
        server.close()


def test_features_fill_the_cache_once(server, demo):
    server.wait_for("ready")
    for request_id, computed in ((51, FACES), (52, 0)):
        server.send({"id": request_id, "command": "features", "encoder": "tiny", "strong_views": 1})
        idle = server.wait_for("idle", id=request_id)
        assert (idle["status"], idle["faces"], idle["computed"]) == ("finished", FACES, computed), idle
    finished = [e for e in server.seen if e["event"] == "finished" and e.get("id") == 52]
    assert "cached already" in finished[0]["message"]
    server.send({"id": 53, "command": "ping"})
    assert server.wait_for("pong", id=53)["encoders"] == ["tiny@cpu"]  # kept for the next job


def test_cancel_stops_the_running_job_and_the_run_is_cancelled(server, demo):
    server.wait_for("ready")
    server.send({"id": 21, "command": "train", "settings": quick_settings(steps=100_000).to_dict()})
    server.wait_for("metrics", id=21)  # training has begun
    server.send({"command": "cancel", "job": 99})  # another job's cancel leaves this one alone
    assert (
        "job 99 is not running"
        in server.wait_for("info", message="nothing to cancel: job 99 is not running")["message"]
    )
    server.send({"command": "cancel"})
    assert server.wait_for("cancelled", id=21)["run"] is not None
    idle = server.wait_for("idle", id=21)
    assert idle["status"] == "cancelled"
    assert run_status(demo, idle["run"]) == "cancelled"
    server.send({"id": 22, "command": "ping"})
    assert server.wait_for("pong", id=22)["busy"] is None


def test_end_of_input_and_sigterm_shut_the_server_down(demo):
    for stop in ("eof", "sigterm"):
        server = Server(demo, "--warm-up", "none")
        try:
            server.wait_for("ready")
            if stop == "eof":
                server.proc.stdin.close()
            else:
                server.proc.send_signal(signal.SIGTERM)
            assert server.wait_for("exiting")["clean"]
            assert server.proc.wait(60) == 0
        finally:
            if not server.proc.stdin.closed:
                server.proc.stdin.close()
            server.proc.stdin = open(os.devnull, "w")  # noqa: SIM115 - the server closes it
            server.close()


def test_a_killed_server_is_noticed_and_its_run_reaped(server, demo):
    server.wait_for("ready")
    server.send({"id": 31, "command": "train", "settings": quick_settings(steps=100_000).to_dict()})
    started = server.wait_for("started", id=31)
    server.proc.kill()
    assert server.proc.wait(60) == -signal.SIGKILL
    assert server.lines.get(timeout=EVENT_TIMEOUT_S) is None or server.lines.get(timeout=EVENT_TIMEOUT_S) is None
    assert run_status(demo, started["run"]) == "failed"


def test_umap_compiles_only_once_no_job_has_run_for_a_while(project):
    from core.training.server import WarmWorker

    server = WarmWorker(project, io.StringIO(), warm_up=())
    compiled: list[float] = []
    server._compile_umap = lambda: compiled.append(time.monotonic())
    server._running = object()  # a refit in the job thread
    waiting = threading.Thread(target=server._compile_umap_when_idle, args=(0.2,))
    waiting.start()
    time.sleep(1.0)
    assert not compiled
    server._running, server._last_busy = None, time.monotonic()
    waiting.join(10)
    assert len(compiled) == 1 and compiled[0] - server._last_busy >= 0.2


def test_stray_output_goes_to_stderr_never_between_events():
    code = (
        "import os, sys\nfrom core.cli.serve_cmds import events_stream\nout = events_stream()\n"
        "print('a stray print')\nos.write(1, b'native library chatter\\n')\nout.write('{\"event\": \"x\"}\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"event": "x"}\n'
    assert "a stray print" in done.stderr and "native library chatter" in done.stderr


def test_the_studio_s_worker_runs_below_the_gui_s_priority(demo):
    from app.warm_worker import serve_command
    from core.threads import WARM_WORKER_NICENESS

    _program, arguments = serve_command(demo)
    assert arguments[-2:] == ["--nice", str(WARM_WORKER_NICENESS)]
    server = Server(demo, "--warm-up", "none", "--nice", str(WARM_WORKER_NICENESS))
    try:
        server.wait_for("ready")
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + WARM_WORKER_NICENESS)  # 19: the lowest
        assert os.getpriority(os.PRIO_PROCESS, server.proc.pid) == expected
    finally:
        server.close()
