"""How long the review queue takes to build, strategy by strategy: what an annotator waits for
when the studio's Review queue tab (or `main.py queue`) asks for a queue.

Times `core.active.build_queue` (load the run's predictions, filter, rank, give every face its
reason) on a synthetic project of 30,000 faces with one finished run (the one bench.gui_timings
makes), and on any project given with --project, e.g. a real FER2013 run. Median of the repeats;
the first build of each project is a warm-up (the SQLite file into the page cache).

    python -m bench.queue_timings                                  # synthetic only; writes docs
    python -m bench.queue_timings --project /tmp/fer-studio-27k    # plus a real run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.gui_timings import make_project
from bench.report import machine_summary, write_section
from core.active import STRATEGIES, build_queue
from core.store.project import Project

SECTION = "queue-timings"


def describe(project: Project) -> str:
    """The project's size and the run the queue reads, in a few words."""
    from sqlalchemy import func, select

    from core.store.models import Image, Prediction, Run

    with project.session() as session:
        faces = session.scalar(select(func.count()).select_from(Image))
        run = session.scalars(select(Run).where(Run.status == "finished").order_by(Run.id.desc())).first()
        if run is None:
            raise SystemExit(f"{project.root}: no finished run to build a queue from")
        predicted = session.scalar(select(func.count()).select_from(Prediction).where(Prediction.run_id == run.id))
    return f"{faces:,} faces, run {run.id} ({run.algorithm}, {run.encoder}; {predicted:,} predictions)"


def timed_strategies() -> list[str]:
    """The strategies over unlabeled faces: those over labeled ones read more than the run's
    predictions (label_errors: the feature cache; timed in bench.label_errors)."""
    return [name for name, strategy in STRATEGIES.items() if strategy.labels == "unlabeled"]


def time_strategies(root: Path, limits: list[int], repeats: int) -> dict[tuple[str, int], float]:
    """Median seconds of build_queue per (strategy, limit) on the project's latest run."""
    project = Project.open(root)
    try:
        build_queue(project, strategy="margin", limit=limits[0])  # warm-up
        medians = {}
        for name in timed_strategies():
            for limit in limits:
                times = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    build_queue(project, strategy=name, limit=limit)
                    times.append(time.perf_counter() - started)
                medians[name, limit] = statistics.median(times)
                print(f"{root.name} {name:<16} limit {limit:>4}: {medians[name, limit]:.2f} s", flush=True)
        return medians
    finally:
        project.close()


def render(
    columns: list[tuple[str, str, dict[tuple[str, int], float]]],
    limits: list[int],
    repeats: int,
    faces: int,
    note: str | None = None,
) -> str:
    """columns: (short name, what the project holds, medians)."""
    header = [f"{short}, {limit}" for short, _, _ in columns for limit in limits]
    lines = [
        "## Review queue: build time per strategy",
        "",
        f"`python -m bench.queue_timings`: seconds for `core.active.build_queue` (the run's predictions "
        f"read from SQLite, the unlabeled train faces filtered, ranked, and a reason written for each face), as "
        f"the studio's Review queue tab and `main.py queue` call it; median of {repeats} builds after one "
        f"warm-up. The synthetic project is bench.gui_timings' ({faces:,} faces with one run: per-level and "
        f"fused predictions, 512-d embeddings). Machine: {machine_summary()}.",
        "",
        "| strategy | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for name in timed_strategies():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{values[name, limit]:.2f}" for _, _, values in columns for limit in limits)
            + " |"
        )
    lines += [
        "",
        "Seconds; column: project, queue length. " + " ".join(f"{short}: {about}." for short, about, _ in columns),
        "",
    ]
    if note:
        lines += [note, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--project",
        type=Path,
        action="append",
        default=[],
        help="also time this project's latest finished run (repeatable)",
    )
    parser.add_argument("--faces", type=int, default=30_000, help="faces of the synthetic project")
    parser.add_argument("--limits", type=lambda t: [int(v) for v in t.split(",")], default=[50, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--note", help="a paragraph for the section: how the --project runs were made, a reading")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    for root in args.project:
        if not (root / "project.json").is_file():
            parser.error(f"{root}: not a project folder (no project.json)")
    columns = []
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = make_project(Path(tmp), args.faces)
        for short, root in [("synthetic", synthetic)] + [(root.name, root) for root in args.project]:
            project = Project.open(root)
            try:
                about = describe(project)
            finally:
                project.close()
            columns.append((short, about, time_strategies(root, args.limits, args.repeats)))
    body = render(columns, args.limits, args.repeats, args.faces, args.note)
    print(body)
    if not args.no_write:
        print(f"written to {write_section(SECTION, body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
