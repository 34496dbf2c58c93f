"""The demo run beside a competing CPU-bound process, before and after thread discipline.

Each case builds a fresh demo project (910 faces) with the code under test, then times
`main.py train DEMO --steps 200 --events json` as a user would start it (no thread settings in
the environment), alone and beside `python -c "while True: pass"`. Phases are timed from the
run's own events: features (the cache, empty at the start), training (the 200 steps), and the
rest (predictions, the UMAP map).

    python -m bench.thread_discipline --before /tmp/before   # a worktree of the earlier commit
    python -m bench.thread_discipline --render saved.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import REPO, machine_summary, saved_or_run, write_section

STEPS = 200
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "FER_STUDIO_THREADS",
)


def user_environment() -> dict[str, str]:
    """The environment of a user's shell: no thread settings."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}


def phase_seconds(events: list[dict]) -> dict[str, float]:
    """Seconds per progress phase, from its first to its last progress event."""
    spans: dict[str, list[float]] = {}
    for event in events:
        if event.get("event") == "progress":
            phase = {"train": "training"}.get(event.get("phase", "training"), event.get("phase", "training"))
            spans.setdefault(phase, []).append(event["time"])
    return {phase: times[-1] - times[0] for phase, times in spans.items()}


def run_case(code: Path, busy: bool, workdir: Path) -> dict:
    project = workdir / f"demo-{code.name}-{'busy' if busy else 'alone'}"
    env = user_environment()
    subprocess.run(
        [sys.executable, "main.py", "demo", str(project)], cwd=code, env=env, check=True, capture_output=True
    )
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        started = time.time()
        out = subprocess.run(
            [sys.executable, "main.py", "train", str(project), "--steps", str(STEPS), "--events", "json"],
            cwd=code,
            env=env,
            capture_output=True,
            text=True,
        )
        total = time.time() - started
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if out.returncode != 0:
        raise RuntimeError(f"train failed in {code}: {out.stderr[-2000:]}")
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    phases = phase_seconds(events)
    return {
        "total": total,
        "features": phases.get("features", 0.0),
        "training": phases.get("training", 0.0),
        "load_before": os.getloadavg()[0],
    }


def run_benchmark(args, checkpoint=None) -> dict:
    codes = {"before": Path(args.before).resolve(), "after": REPO}
    rows: list[dict] = []
    results = {
        "settings": {
            "machine": machine_summary(),
            "steps": STEPS,
            "note": args.note,
            "before_commit": _commit(codes["before"]),
            "after_commit": _commit(REPO),
        },
        "rows": rows,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for busy in (False, True):
            for name, code in codes.items():
                row = {"code": name, "busy": busy, **run_case(code, busy, Path(tmp))}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if checkpoint:
                    checkpoint(results)
    return results


def _commit(code: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=code, capture_output=True, text=True
    ).stdout.strip()
    return out.stdout.strip() + (" + uncommitted work in the checkout" if dirty else "")


def render(results: dict) -> str:
    s = results["settings"]
    lines = [
        "## Thread discipline: the demo run beside another busy process",
        "",
        f"`python -m bench.thread_discipline --before WORKTREE`: a fresh demo project (910 faces, empty feature "
        f"cache), then `main.py train DEMO --steps {s['steps']}` started as from a shell (no thread variables), "
        'alone and beside `python -c "while True: pass"`. Before: commit '
        f"{s['before_commit']} (torch's default threads, OpenMP spinning, torch eager features); after: "
        f"{s['after_commit']} (core/threads.py's plan, ONNX Runtime features). Machine: {s['machine']}. "
        + (
            s.get("note")
            or "Other engineers' jobs shared the machine too: the 1-minute load average before each case is given."
        ),
        "",
        "| code | competing process | total s | features s | training s | load before |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['code']} | {'yes' if r['busy'] else 'no'} | **{r['total']:.0f}** | {r['features']:.0f} | "
            f"{r['training']:.1f} | {r['load_before']:.1f} |"
        )
    lines += [
        "",
        "Features and training are timed from the first to the last progress event of their phase; "
        "the total adds starting, predictions and the UMAP map.",
    ]
    lines += ["", *_reading(results["rows"])]
    if max((r["load_before"] for r in results["rows"] if not r["busy"]), default=0) > 2:
        lines[-1] += ' With other jobs at a load above 2, "alone" was never idle: the same failure in a milder form.'
    return "\n".join(lines)


def _reading(rows: list[dict]) -> list[str]:
    """How many times faster `after` is than `before`, alone and beside the busy process."""
    by = {(r["code"], r["busy"]): r for r in rows}
    parts = []
    for busy, words in ((False, "alone"), (True, "beside the busy process")):
        before, after = by.get(("before", busy)), by.get(("after", busy))
        if before and after:
            parts.append(
                f"{words}: {before['total'] / after['total']:.1f}x in all, "
                f"{before['features'] / max(after['features'], 1e-9):.1f}x the features, "
                f"{before['training'] / max(after['training'], 1e-9):.1f}x the training"
            )
    if not parts:
        return []
    return [
        "**Reading.** After against before, " + "; ".join(parts) + ". The training part is the thread "
        "plan's: torch's two spinning OpenMP threads fight whatever else runs on a 2-core machine, where the "
        "plan's worker sees the busy cores when it starts and takes one thread that waits passively (on free "
        "cores it takes both, which spin briefly before they sleep); the "
        'features part is ONNX Runtime with views drawn ahead ("Feature extraction speed").'
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="a checkout of the code to compare against (git worktree add DIR COMMIT)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--render", type=Path, help="render saved results into docs/benchmarks.md and exit")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", default="", help="what else ran, for the section")
    args = parser.parse_args(argv)
    if not args.render and not args.before:
        parser.error("--before DIR is needed to measure (or --render FILE)")
    results = saved_or_run(args, run_benchmark)
    body = render(results)
    print(body)
    if not args.no_write:
        write_section("thread-discipline", body, rendered_only=bool(args.render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
