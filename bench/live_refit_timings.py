"""The live loop in the studio: from the K-th correction to the review queue refreshed with the
refit's run, with the real warm worker (`main.py serve`), offscreen.

The studio opens the project (the demo by default: `main.py demo`, then a first
`main.py train --steps 200`), waits for its warm worker to be ready, shows the review queue and
labels K faces of it with Enter (accept the suggestion) as an annotator would, round after round;
each round's clock runs from the K-th correction to the queue shown with the new run, the face
being labeled still current. The worker's own account of each refit (its `timings_s`) is kept.

Usage: python -m bench.live_refit_timings [--project DIR] [--rounds 3] [--every 20] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import gui_timings
from bench.report import REPO, machine_summary, write_section

SECTION = "live-refit-studio"
TIMEOUT_S = 600


def demo_project(root: Path) -> Path:
    """The demo (910 faces) with a first run of 200 steps, as the brief of issue 20 measures it."""
    for argv in (["demo", str(root)], ["train", str(root), "--steps", "200", "-q"]):
        subprocess.run([sys.executable, str(REPO / "main.py"), *argv], check=True, cwd=REPO)
    return root


def _wait(app, condition, timeout_s: float = TIMEOUT_S) -> float:
    """Process events until `condition()`; perf_counter() then (TimeoutError after `timeout_s`)."""
    if gui_timings._wait(app, condition, timeout_s) is None:
        raise TimeoutError(f"waited {timeout_s:.0f} s in vain")
    return time.perf_counter()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(project: Path, rounds: int, every: int, screenshot: Path | None = None) -> dict:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from app import settings as studio
    from app.main import application
    from app.main_window import MainWindow
    from app.warm_worker import READY

    os.environ["FER_STUDIO_HOME"] = tempfile.mkdtemp()
    os.environ.pop(studio.LIVE_REFIT_ENV, None)
    settings = studio.studio_settings()
    settings.setValue(studio.KEY_REFIT_EVERY, every)
    settings.setValue(studio.KEY_REFIT_PAUSE, "off")  # the clock starts at the K-th correction
    settings.sync()
    app = application()
    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    worker_events: list[dict] = []
    window.warm_worker.event.connect(lambda event: worker_events.append({**event, "seen": time.perf_counter()}))
    opened = time.perf_counter()
    window.open_project(project)
    worker = window.warm_worker

    def worker_pid() -> int:
        if worker.process is None:
            raise RuntimeError("the warm worker's process is not running")
        return worker.process.processId()

    ready = _wait(app, lambda: worker.state == READY) - opened
    primed = _wait(app, lambda: any(e.get("part") == "refit" for e in worker_events)) - opened
    # Rounds start once UMAP is compiled too (it waits for an idle worker): the steady state.
    umap_warm = _wait(app, lambda: any(e.get("part") == "umap" for e in worker_events)) - opened
    window.show_review()
    review, live = window.review, window.live_refit
    _wait(app, lambda: review.answered == review.request() and not review.building)
    grid = review.grid
    grid.setFocus()
    results = []
    for round_ in range(rounds):
        parent = window.state.current_run
        refreshed: list[int] = []
        live.refreshed.connect(refreshed.append)
        for _ in range(every):
            QTest.keyClick(grid, Qt.Key.Key_Return)  # accept the suggestion, move on
        corrected = time.perf_counter()
        cpu_before = time.process_time(), cpu_seconds(worker_pid())
        being_labeled = grid.current_face().id
        _wait(app, lambda refreshed=refreshed: bool(refreshed))
        run = refreshed[0]
        shown = _wait(
            app,
            lambda run=run: review.answered is not None and review.answered.run_id == run and not review.building,
        )
        cpu = time.process_time() - cpu_before[0], cpu_seconds(worker_pid()) - cpu_before[1]
        live.refreshed.disconnect(refreshed.append)
        finished = next(e for e in reversed(worker_events) if e["event"] == "finished" and e.get("run") == run)
        started = next(e for e in worker_events if e["event"] == "started" and e.get("run") == run)
        results.append(
            {
                "round": round_ + 1,
                "parent": parent,
                "run": run,
                "steps": started.get("steps"),
                "seconds": shown - corrected,
                "studio_cpu_s": cpu[0],
                "worker_cpu_s": cpu[1],
                "to_started_s": started["seen"] - corrected,
                "to_finished_s": finished["seen"] - corrected,
                "worker_timings_s": finished.get("timings_s", {}),
                "face_kept": grid.current_face().id == being_labeled and window.detail.face_id == being_labeled,
                "load_average": os.getloadavg(),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    if screenshot is not None:  # a moment later, as the annotator sees it: thumbnails load in the background
        gui_timings._wait(app, lambda: False, 1.0)
        window.grab().save(str(screenshot))
    window.close()
    return {
        "project": str(project),
        "every": every,
        "worker_ready_s": ready,
        "primed_s": primed,
        "umap_warm_s": umap_warm,
        "worker_threads": worker.threads,
        "rounds": results,
    }


def _rows(rounds: list[dict]) -> str:
    return "\n".join(
        f"| {r['round']} | {r['parent']} → {r['run']} ({r['steps']} steps) | **{r['seconds']:.2f}** | "
        f"{r['seconds'] - r['worker_timings_s'].get('total', 0):.2f} | "
        + " · ".join(f"{k} {v:.2f}" for k, v in r["worker_timings_s"].items())
        + f" | {r['worker_cpu_s']:.2f} + {r['studio_cpu_s']:.2f} | {'yes' if r['face_kept'] else 'NO'} "
        f"| {r['load_average'][0]:.1f} |"
        for r in rounds
    )


TABLE_HEAD = (
    "| round | run | correction → refreshed queue, s | outside the refit (commands, events, views), s "
    "| the refit's own account, s | CPU s: worker + studio | face kept | load average |\n"
    "|---|---|---|---|---|---|---|---|"
)


def _shares(rounds: list[dict]) -> str:
    """The median share of the round's time each of the refit's phases took."""
    phases = [name for name in rounds[0]["worker_timings_s"] if name != "total"]
    shares = {
        name: statistics.median(r["worker_timings_s"].get(name, 0) / r["seconds"] for r in rounds) for name in phases
    }
    return ", ".join(
        f"{name} {100 * share:.0f}%" for name, share in sorted(shares.items(), key=lambda kv: -kv[1]) if share >= 0.01
    )


def render(results: dict, fer: dict | None = None) -> str:
    rounds = results["rounds"]
    seconds = [r["seconds"] for r in rounds]
    cpu = [r["worker_cpu_s"] + r["studio_cpu_s"] for r in rounds]
    text = f"""## Live refit in the studio: correction to refreshed queue

`python -m bench.live_refit_timings`: the studio offscreen on the demo project (910 faces; `main.py demo`, then
`main.py train --steps 200`, the offline encoder) with its warm worker (`main.py serve`, {results["worker_threads"]}
compute thread(s)) refitting the current run after every {results["every"]} corrections (Enter on the review
queue's current face). The clock runs from the {results["every"]}th correction to the queue shown with the refit's
run, the face being labeled still current. Machine: {machine_summary()}.

The worker was ready {results["worker_ready_s"]:.1f} s after the project opened and had loaded the encoder and the
features for refits at {results["primed_s"]:.1f} s; its UMAP warm-up (once it had been idle for 20 s) ended at
{results["umap_warm_s"]:.1f} s. The rounds began after that.

{TABLE_HEAD}
{_rows(rounds)}

Median **{statistics.median(seconds):.2f} s** against a target of 5 s; of a round's time (median shares):
{_shares(rounds)}; the refit's step count grows with the labeled set. The CPU time the two processes used in a
round (median {statistics.median(cpu):.2f} s) is about the wall time, since the worker computes on one thread and
the studio waits for it. The warm-up had loaded the encoder and the features before the first round, so the first
round costs what later ones do ("features 0.00")."""
    if fer is not None:
        fer_seconds = [r["seconds"] for r in fer["rounds"]]
        text += f"""

### FER2013 in the studio

The same on a FER2013 studio copy (`python -m bench.fer_project --studio-copy DIR --labeled-per-class 100`: 27,485
train faces, 100 labeled per class, 3,562 val faces, its feature cache filled; a first run of
{fer.get("parent_steps", "?")} steps with a UMAP map), `--project DIR`: the worker was ready
{fer["worker_ready_s"]:.1f} s after the project opened, had loaded the features for refits at
{fer["primed_s"]:.1f} s and compiled UMAP at {fer["umap_warm_s"]:.1f} s.

{TABLE_HEAD}
{_rows(fer["rounds"])}

Median **{statistics.median(fer_seconds):.2f} s** against a target of 30 s; of a round's time (median shares):
{_shares(fer["rounds"])}."""
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, help="a project with a finished head-mode run (default: a new demo)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--json-out", type=Path, help="save the results here")
    parser.add_argument("--render", type=Path, help="write the section from results saved by --json-out")
    parser.add_argument("--fer", type=Path, help="with --render: results of a FER2013 studio copy (--project) too")
    parser.add_argument("--parent-steps", type=int, help="the first run's steps of --project, for the report")
    parser.add_argument("--note", default="", help="what else was running, for the report")
    parser.add_argument("--screenshot", type=Path, help="the window a second after the last round, as PNG")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
    else:
        project = args.project or demo_project(Path(tempfile.mkdtemp()) / "demo")
        results = measure(project, args.rounds, args.every, args.screenshot)
        results["parent_steps"] = args.parent_steps or (None if args.project else 200)
        if args.json_out:
            args.json_out.write_text(json.dumps(results, indent=1))
    fer = json.loads(args.fer.read_text()) if args.fer else None
    body = render(results, fer) + (f"\n\nAlso running: {args.note}" if args.note else "")
    print(body)
    if not args.no_write:
        write_section(SECTION, body, rendered_only=bool(args.render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
