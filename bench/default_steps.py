"""How many steps a run needs by default, and how long a new user waits for a first model.

`sweep`: fused val accuracy of `main.py train DEMO --steps N` on the studio's demo project (70
labeled, 630 unlabeled train faces, 210 labeled val faces) for several step counts and seeds, with
the instance warm-up at auto (a fifth of the steps) and at the former fixed 300 steps. The feature
cache is filled first, so the runs differ only in training. Each run is its own process, as the
studio launches it. This is what core/training/settings.py's auto_steps was chosen from.

`first-model`: the studio on a freshly built demo project (features not cached), offscreen:
the time from pressing "Train a first model" (the default settings) to the review queue and the
UMAP map shown, with each phase's share from the worker's events; optionally beside one other
CPU-bound process (--competitor).

    python -m bench.default_steps sweep --project /tmp/demo --json-out steps.json
    python -m bench.default_steps first-model --competitor --json-out first.json
    python -m bench.default_steps sweep --render steps.json     # rewrite the section only

`map-estimate`: UMAP of N random 512-d embeddings, each in a fresh process as the worker runs it
(numba compiles or loads its cache first): what core/training/worker.py's estimated_map_seconds
(the map phase's ETA) is fitted to.
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

from bench.report import REPO, machine_summary, saved_or_run, write_section
from core.training.events import PHASES
from core.training.settings import auto_schedule, auto_steps

SECTION = "default-steps"
WARMUPS = {"auto": None, "fixed 300": 300}


def train_events(project: Path, steps: int, seed: int, warmup: int | None) -> list[dict]:
    command = [
        sys.executable,
        str(REPO / "main.py"),
        "train",
        str(project),
        "--steps",
        str(steps),
        "--seed",
        str(seed),
        "--projection",
        "none",
        "--events",
        "json",
        "--instance-warmup",
        str(auto_schedule(steps).instance_warmup if warmup is None else warmup),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def phase_seconds(events: list[dict]) -> dict[str, float]:
    """Seconds from each phase event to the next phase or the end."""
    marks = [(e["phase"], e["time"]) for e in events if e["event"] == "phase"]
    end = events[-1]["time"]
    return {phase: round(nxt - at, 2) for (phase, at), (_, nxt) in zip(marks, marks[1:] + [("", end)])}


def run_sweep(args, save) -> dict:
    results = {
        "project": str(args.project),
        "steps": args.steps,
        "seeds": args.seeds,
        "runs": [],
        "machine": machine_summary(),
        "load": os.getloadavg()[0],
    }
    train_events(args.project, 1, 0, None)  # fills the feature cache
    for seed in args.seeds:
        for steps in args.steps:
            for name, warmup in WARMUPS.items():
                events = train_events(args.project, steps, seed, warmup)
                metrics = events[-1].get("metrics", {})
                results["runs"].append(
                    {
                        "steps": steps,
                        "seed": seed,
                        "warmup": name,
                        "val_fused_accuracy": metrics.get("val_fused_accuracy"),
                        "val_accuracy": metrics.get("val_accuracy"),
                        "phases": phase_seconds(events),
                    }
                )
                print(results["runs"][-1], flush=True)
                save and save(results)
    return results


def render_sweep(results: dict) -> str:
    labeled, unlabeled = 70, 630
    lines = [
        "## Default step count (the demo project)",
        "",
        f"`python -m bench.default_steps sweep`: `main.py train DEMO --steps N --projection none` on the studio's "
        f"demo ({labeled} labeled and {unlabeled} unlabeled train faces, 210 labeled val faces; sitfer, head mode, "
        f"offline encoder, batch 64 + 192, cached features), one process per run, seeds "
        f"{', '.join(map(str, results['seeds']))}. Fused val accuracy of the EMA model at the last step, in %, "
        f"mean (min-max) over seeds; the instance warm-up at auto (a fifth of the steps) and at the former "
        f"fixed 300 steps (where the run is shorter, the instance level never joins). Training: seconds of the "
        f"training phase, median. Machine: {results['machine']}; {results.get('note', '')}",
        "",
        "| steps | warm-up auto | warm-up 300 | training (s) |",
        "|---:|---|---|---:|",
    ]
    for steps in results["steps"]:
        cells = []
        for name in WARMUPS:
            values = [
                100 * r["val_fused_accuracy"]
                for r in results["runs"]
                if r["steps"] == steps and r["warmup"] == name and r["val_fused_accuracy"] is not None
            ]
            cells.append(f"{statistics.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})" if values else "-")
        seconds = [r["phases"].get("training") for r in results["runs"] if r["steps"] == steps]
        seconds = [s for s in seconds if s is not None]
        lines.append(
            f"| {steps:,} | {cells[0]} | {cells[1]} | {statistics.median(seconds):.0f} |"
            if seconds
            else f"| {steps:,} | {cells[0]} | {cells[1]} | - |"
        )
    lines += [
        "",
        f"**Chosen**: `auto_steps` passes over the unlabeled train faces 20 times (and the labeled ones 100 "
        f"times), rounded up to 50, between 200 and 2,000 steps: {auto_steps(labeled, unlabeled):,} for the demo, "
        f"{auto_steps(100, 5_000):,} for 100 labeled and 5,000 unlabeled faces, {auto_steps(700, 26_785):,} for "
        f"FER2013 train (the step count of the FER2013 benchmarks above). On the demo, 200 steps give about 72 % "
        f"fused, 6 points below 1,500 steps for an eighth of the training: the floor is set by the first "
        f"model's one-minute budget, and more steps are a number in the form (or a refit) away. Validation "
        f"every eighth and a checkpoint every quarter of the run; the instance level joins after a fifth (300 "
        f"of 1,500, as before): the auto column shows that letting it join short runs costs nothing.",
    ]
    return "\n".join(lines)


# -- the map phase's estimate ---------------------------------------------------------------------------
UMAP_PROBE = (
    "import sys, time, numpy as np; from core.threads import configure_threads; configure_threads('worker'); "
    "from core.projection import project_2d; n = int(sys.argv[1]); "
    "x = np.random.default_rng(0).normal(size=(n, 512)).astype(np.float32); "
    "t = time.perf_counter(); project_2d(x, 'umap'); print(time.perf_counter() - t)"
)


def run_map_estimate(args, save) -> dict:
    results = {"faces": args.faces, "seconds": [], "machine": machine_summary(), "load": os.getloadavg()[0]}
    for n in args.faces:
        done = subprocess.run(
            [sys.executable, "-c", UMAP_PROBE, str(n)], capture_output=True, text=True, cwd=REPO, check=True
        )
        results["seconds"].append(round(float(done.stdout.split()[-1]), 1))
        print(n, results["seconds"][-1], flush=True)
        save and save(results)
    return results


def render_map_estimate(results: dict) -> str:
    from core.training.worker import estimated_map_seconds  # today's estimate, fitted to these measurements

    rows = [
        f"| {n:,} | {s:.0f} | {estimated_map_seconds(n, 'umap'):.0f} |"
        for n, s in zip(results["faces"], results["seconds"])
    ]
    return "\n".join(
        [
            "### The map phase's estimate",
            "",
            f"`python -m bench.default_steps map-estimate`: UMAP (core.projection, 2-D, cosine) of N random 512-d "
            f"embeddings, each in a fresh process with the worker's thread plan, against the estimate the worker "
            f"sends with the map phase (`estimated_map_seconds`). Machine: {results['machine']}; load average "
            f"{results['load']:.1f} when it started. {results.get('note', '')}",
            "",
            "| faces | measured (s) | estimate (s) |",
            "|---:|---:|---:|",
            *rows,
        ]
    )


# -- the first model in the studio -----------------------------------------------------------------
def run_first_model(args, save) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    root = Path(tempfile.mkdtemp(prefix="first-model-")) / "demo"
    subprocess.run([sys.executable, str(REPO / "main.py"), "demo", str(root), "-q"], check=True, cwd=REPO)
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.competitor else None
    try:
        result = _time_studio(root)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    result.update(
        {
            "competitor": bool(args.competitor),
            "machine": machine_summary(),
            "note": args.note or "",
            "load": os.getloadavg()[0],
        }
    )
    save and save(result)
    return result


def _time_studio(root: Path) -> dict:
    from PySide6.QtCore import QEventLoop, QTimer

    from app.main import application
    from app.main_window import MainWindow

    app = application()
    window = MainWindow()
    window.resize(1300, 820)
    window.show()
    assert window.open_project(root)
    window.show_review()
    events: list[dict] = []
    window.training.worker.event.connect(lambda e: events.append({**e, "seen": time.time()}))
    shown: dict[str, float] = {}
    window.review.queue_shown.connect(
        lambda: shown.setdefault("queue", time.time()) if window.review.last_result is not None else None
    )
    started = time.time()
    assert window.train_first_model()
    loop = QEventLoop()
    timer = QTimer()

    def look() -> None:
        method = _map_shown(window)
        if method is not None:
            shown.setdefault(method, time.time())
        if "queue" in shown and "umap" in shown:
            loop.quit()

    timer.timeout.connect(look)
    timer.start(100)
    loop.exec()
    window.close()
    app.processEvents()
    return {
        "seconds_to_first_event": round(events[0]["seen"] - started, 1),
        "seconds_to_queue": round(shown["queue"] - started, 1),
        "seconds_to_pca_map": round(shown.get("pca", shown["umap"]) - started, 1),
        "seconds_to_map": round(shown["umap"] - started, 1),
        "phases": phase_seconds([e for e in events]),
        "steps": next((e.get("steps") for e in events if e["event"] == "started"), None),
        "metrics": next((e.get("metrics") for e in events if e["event"] == "finished"), None),
    }


def _map_shown(window) -> str | None:
    """The method of the map shown for the current run, if any."""
    data = window.map_view.data
    return data.method if data is not None and data.run_id == window.state.current_run else None


def render_first_model(result: dict) -> str:
    phases = ", ".join(f"{phase} {result['phases'][phase]:.0f} s" for phase in PHASES if phase in result["phases"])
    fused = (result.get("metrics") or {}).get("val_fused_accuracy")
    return "\n".join(
        [
            "### The first model in the studio",
            "",
            f"`python -m bench.default_steps first-model{' --competitor' if result['competitor'] else ''}`: a freshly "
            f'built demo (no cached features) opened in the studio offscreen, "Train a first model" pressed (the '
            f"default settings: {result['steps']} steps): the review queue was shown after "
            f"**{result['seconds_to_queue']:.0f} s** with the PCA map (after {result['seconds_to_pca_map']:.0f} s), "
            f"the UMAP map after **{result['seconds_to_map']:.0f} s**"
            + (
                f"; the worker's first event came after {result['seconds_to_first_event']:.0f} s (Python, torch and "
                f"the project opening)"
                if "seconds_to_first_event" in result
                else ""
            )
            + (f" (fused val accuracy {100 * fused:.1f} %)" if fused is not None else "")
            + ". Phases, from the "
            f"worker's events: {phases}. "
            + (
                "One other CPU-bound process (`python -c 'while True: pass'`) ran beside it. "
                if result["competitor"]
                else ""
            )
            + f"Machine: {result['machine']}"
            + (f"; load average {result['load']:.1f} when it ended" if "load" in result else "")
            + f". {result.get('note', '')}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sweep = sub.add_parser("sweep")
    sweep.add_argument("--project", type=Path, help="the demo project (main.py demo PATH)")
    sweep.add_argument("--steps", type=int, nargs="+", default=[100, 200, 400, 800, 1500])
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    first = sub.add_parser("first-model")
    first.add_argument("--competitor", action="store_true", help="one CPU-bound process beside the studio")
    umap = sub.add_parser("map-estimate")
    umap.add_argument("--faces", type=int, nargs="+", default=[910, 3000, 9000])
    for p in (sweep, first, umap):
        p.add_argument("--json-out", type=Path)
        p.add_argument("--render", type=Path, help="render saved results instead of measuring")
        p.add_argument("--note", default="", help="what else was running, for the section")
    args = parser.parse_args(argv)
    if args.what == "sweep":
        if args.render is None and args.project is None:
            parser.error("sweep needs --project (or --render)")
        results = saved_or_run(args, run_sweep)
        if args.note:
            results["note"] = args.note
        write_section(SECTION, render_sweep(results), rendered_only=args.render is not None)
    elif args.what == "map-estimate":
        results = saved_or_run(args, run_map_estimate)
        if args.note:
            results["note"] = args.note
        write_section(SECTION + "-map", render_map_estimate(results), rendered_only=args.render is not None)
    else:
        results = saved_or_run(args, run_first_model)
        if args.note:
            results["note"] = args.note
        write_section(SECTION + "-first-model", render_first_model(results), rendered_only=args.render is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
