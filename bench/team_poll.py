"""The studio's live team updates: how long one look at the corrections log takes
(`StudioApi.team.activity`, core/team/activity.py: what app/team_poller.py runs every 2.5 s off
the GUI thread), on logs of 100,000 and 1,000,000 corrections, on SQLite (WAL, the project's own
file) and on PostgreSQL, in the same run.

For each backend and log size: a project of FACES faces and a log of that many correction rows,
both inserted directly (the look reads only the log: no votes need deciding), 1% of the newest
UNDO_WINDOW rows undone; on PostgreSQL the log is then analyzed, as autovacuum would have done
while it grew. Then each of these is timed REPEATS times, from the call to its return
(a session opened and closed, as the studio's api does):

- the first look (the newest id and the window's undone rows);
- a quiet look (nothing new since the last);
- a look after another annotator's 10 new corrections (inserted and committed before it);
- a look after an undo of a 500-row step in the window (its rows marked undone), and after its redo.

PostgreSQL is a throwaway server (pgserver, default settings) unless --postgres-url names an
empty database on a server of yours.

    python -m bench.team_poll --json-out docs/results/team_poll.json --note "what else ran"
    python -m bench.team_poll --render docs/results/team_poll.json
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select, text, update

from bench.report import REPO, add_report_arguments, keep_note, machine_summary, publish, saved_or_run
from bench.team_load import postgres_database

BACKENDS = ("sqlite", "postgresql")
LOG_SIZES = (100_000, 1_000_000)
INSERT_BATCH = 50_000
STEP_UNDONE = 500
NEW_ROWS = 10
JSON_RESULTS = REPO / "docs" / "results" / "team_poll.json"


def make_project(root: Path, database_url: str | None, faces: int):
    from core.store.models import Image
    from core.store.project import Project

    project = Project.create(root, database_url)
    with project.session() as s:
        s.execute(
            insert(Image),
            [{"path": f"{n}.png", "content_hash": f"{n:064x}", "width": 48, "height": 48} for n in range(faces)],
        )
        ids = list(s.scalars(select(Image.id).order_by(Image.id)))
    return project, ids


def grow_log(project, faces: list[int], size: int) -> float:
    """Log rows until the log holds `size`, 1% of the newest UNDO_WINDOW undone; seconds taken."""
    from core.store.models import Correction
    from core.team.activity import UNDO_WINDOW

    started = time.perf_counter()
    with project.session() as s:
        have = s.scalar(select(func.count()).select_from(Correction)) or 0
    now = datetime.now(UTC)
    for first in range(have, size, INSERT_BATCH):
        rows = [
            {
                "image_id": faces[n % len(faces)],
                "annotator": ("ana", "ben", "cy")[n % 3],
                "created_at": now,
                "new_label": "fear",
                "undone_at": now if n >= size - UNDO_WINDOW and n % 100 == 0 else None,
            }
            for n in range(first, min(size, first + INSERT_BATCH))
        ]
        with project.session() as s:
            s.execute(insert(Correction), rows)
    if project.engine.dialect.name == "postgresql":
        # Autovacuum analyzes a table each time it grows by a tenth, as a log does over days; right
        # after a burst of inserts the planner's figures are an older table's (it then scans it whole).
        with project.session() as s:
            s.execute(text("ANALYZE corrections"))
    return time.perf_counter() - started


def timed(call: Callable[[], object], repeats: int, before: Callable[[], None] = lambda: None) -> dict:
    times = []
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times), "max_ms": max(times)}


class Looker:
    """The studio's poller in a loop: each look starts from the last one's watch."""

    def __init__(self, api):
        self.api = api
        self.watch = api.team.activity(None, "ana").watch
        self.found = 0  # faces the last look reported

    def __call__(self) -> None:
        activity = self.api.team.activity(self.watch, "ana")
        self.watch, self.found = activity.watch, len(activity.face_ids)


def measure(backend: str, server: str, project, faces: list[int], size: int, args) -> dict:
    from core.store.models import Correction
    from core.studio_api import StudioApi

    filled_s = grow_log(project, faces, size)
    api = StudioApi(project)
    look = Looker(api)

    def add_rows() -> None:
        now = datetime.now(UTC)
        with project.session() as s:
            s.execute(
                insert(Correction),
                [
                    {"image_id": faces[i], "annotator": "ben", "created_at": now, "new_label": "anger"}
                    for i in range(NEW_ROWS)
                ],
            )

    def mark(undone: bool) -> Callable[[], None]:
        def change() -> None:
            with project.session() as s:
                newest = s.scalar(select(Correction.id).order_by(Correction.id.desc()).limit(1)) or 0
                step = Correction.id.between(newest - 5 * STEP_UNDONE, newest - 4 * STEP_UNDONE - 1)
                s.execute(update(Correction).where(step).values(undone_at=datetime.now(UTC) if undone else None))

        return change

    result = {
        "backend": backend,
        "server": server,
        "log_rows": size,
        "fill_s": filled_s,
        "first_look": timed(lambda: api.team.activity(None, "ana"), args.repeats),
        "quiet_look": timed(look, args.repeats),
        "after_new_rows": timed(look, args.repeats, before=add_rows),
    }
    assert look.found > 0, "the look after new rows found nothing"
    undo_times: list[float] = []
    redo_times: list[float] = []
    for _ in range(args.repeats):
        for change, times in ((mark(True), undo_times), (mark(False), redo_times)):
            change()
            started = time.perf_counter()
            look()
            times.append((time.perf_counter() - started) * 1000)
            assert look.found > 0, "the look after an undo or redo found nothing"
    result["after_undo"] = {"median_ms": statistics.median(undo_times), "max_ms": max(undo_times)}
    result["after_redo"] = {"median_ms": statistics.median(redo_times), "max_ms": max(redo_times)}
    print(result, flush=True)
    return result


def run_benchmark(args, save: Callable[[dict], None] | None) -> dict:
    results: dict = {
        "machine": machine_summary(),
        "settings": {"faces": args.faces, "repeats": args.repeats, "log_sizes": args.sizes},
        "runs": [],
        "note": args.note,
    }
    with tempfile.TemporaryDirectory(prefix="team-poll-") as folder:
        workdir = Path(folder)
        for backend in args.backends:
            root = workdir / f"project-{backend}"
            if backend == "postgresql":
                with postgres_database(args.postgres_url, workdir) as (url, server):
                    measure_sizes(backend, server, root, url, args, results, save)
            else:
                measure_sizes(backend, f"SQLite {sqlite3.sqlite_version} (WAL)", root, None, args, results, save)
    return results


def measure_sizes(backend, server, root: Path, url: str | None, args, results: dict, save) -> None:
    """One project per backend, its log grown to each size in turn and measured there."""
    project, faces = make_project(root, url, args.faces)
    try:
        for size in sorted(args.sizes):
            results["runs"].append(measure(backend, server, project, faces, size, args))
            if save:
                save(results)
    finally:
        project.close()


def render(results: dict) -> str:
    s = results["settings"]
    lines = [
        "## Live team updates: one look at the corrections log",
        "",
        "`python -m bench.team_poll`: `StudioApi.team.activity` (core/team/activity.py), what the "
        "studio's team poller runs every 2.5 s off the GUI thread, on a project of "
        f"{s['faces']:,} faces whose log holds {' or '.join(f'{n:,}' for n in s['log_sizes'])} corrections "
        "(inserted directly, 1% of "
        f"the newest 20,000 undone); each look timed {s['repeats']} times from the call to its return, "
        "a session opened and closed as the studio's api does. PostgreSQL: pgserver on the same machine "
        f"(a unix socket). Machine: {results['machine']}; no GPU.",
        "",
        "| backend | log rows | first look ms | quiet look ms | after 10 new rows ms | after a 500-row undo ms | after its redo ms |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(t: dict) -> str:
        return f"{t['median_ms']:.1f} (max {t['max_ms']:.1f})"

    for r in results["runs"]:
        lines.append(
            f"| {r['server']} | {r['log_rows']:,} | {cell(r['first_look'])} | {cell(r['quiet_look'])} | "
            f"{cell(r['after_new_rows'])} | {cell(r['after_undo'])} | {cell(r['after_redo'])} |"
        )
    lines += ["", "Median of the repeats, the slowest in brackets."]
    if results.get("note"):
        lines += ["", results["note"]]
    lines.append("\nRaw results: docs/results/team_poll.json.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=list(LOG_SIZES))
    parser.add_argument("--backends", type=lambda v: v.split(","), default=list(BACKENDS), help="sqlite,postgresql")
    parser.add_argument("--postgres-url", help="an empty database on a server of yours (default: a pgserver one)")
    add_report_arguments(parser, JSON_RESULTS)
    args = parser.parse_args(argv)
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))}; choose from {', '.join(BACKENDS)}")
    return publish("team-poll", render(keep_note(args, saved_or_run(args, run_benchmark))), args)


if __name__ == "__main__":
    sys.exit(main())
