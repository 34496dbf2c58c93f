"""A team labeling at once: annotator processes making corrections against one project, on
PostgreSQL and on SQLite (WAL), in the same run.

For each backend: a fresh project of FACES faces (Image rows inserted directly: labeling needs
no pixels), then ANNOTATORS processes, released together by a barrier, each making CORRECTIONS
calls of `core.labeling.set_label(project, face, label, annotator)` on random faces with random
labels, under its own annotator name. Each process records what every call returned and how
long it took; exceptions are caught and counted by kind. Afterwards the corrections log is
compared with what the processes were told: every correction that returned a step must be in the
log with that annotator, face and new label (a "lost write" otherwise), no log row may be one no
process was told of, and the log replayed face by face (each annotator's newest word is their
vote; core.team.votes.decide) must give every correction's recorded old label (no writer read a
stale label), the stored votes and each face's label row.

PostgreSQL is a throwaway server (the pgserver wheel, default settings: fsync on) unless
--postgres-url names a database on a server of yours (its tables are created; it must be empty).

    python -m bench.team_load --json-out docs/results/team_load.json --note "what else ran"
    python -m bench.team_load --render docs/results/team_load.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, insert, select, text

from bench.report import machine_summary, saved_or_run, write_section

BACKENDS = ("postgresql", "sqlite")


# -- one annotator ---------------------------------------------------------------------------
def annotate(root: str, annotator: str, corrections: int, faces: list[int], seed: int, barrier, out: str) -> None:
    """One annotator's process: `corrections` calls of set_label, each timed, written to `out`."""
    from core.classes import class_names
    from core.labeling import set_label
    from core.store.errors import explain_storage_error
    from core.store.project import Project

    rng = random.Random(seed)
    names = class_names()
    calls: list[dict] = []
    project = Project.open(root)
    try:
        with project.session() as session:  # connected before the start, as an open studio is
            session.execute(text("SELECT 1"))
        barrier.wait()
        started = time.time()
        for _ in range(corrections):
            face, label = rng.choice(faces), rng.choice(names)
            begun = time.perf_counter()
            try:
                step = set_label(project, face, label, annotator)
            except Exception as exc:  # noqa: BLE001 - every failure is counted by kind, none stops the run
                problem = explain_storage_error(exc)
                calls.append(
                    {
                        "face": face,
                        "label": label,
                        "seconds": time.perf_counter() - begun,
                        "error": type(exc).__name__,
                        "problem": problem.kind if problem else None,
                        "message": str(exc).splitlines()[0][:300],
                    }
                )
                continue
            calls.append(
                {
                    "face": face,
                    "label": label,
                    "seconds": time.perf_counter() - begun,
                    "ids": list(step.correction_ids) if step else [],
                }
            )
        finished = time.time()
    except Exception:  # a worker that fails outside a call says why in its result file, then fails
        Path(out).write_text(json.dumps({"annotator": annotator, "crashed": traceback.format_exc()}))
        raise
    finally:
        project.close()
    Path(out).write_text(json.dumps({"annotator": annotator, "started": started, "finished": finished, "calls": calls}))


# -- one backend -----------------------------------------------------------------------------
@contextmanager
def postgres_database(external_url: str | None, workdir: Path) -> Iterator[tuple[str, str]]:
    """(URL of an empty database, server version): on --postgres-url's server, or a throwaway one."""
    if external_url:
        yield external_url, _server_version(external_url)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver

    server = pgserver.get_server(workdir / "pgdata", cleanup_mode="stop")
    host = server.get_postmaster_info().socket_dir
    admin = create_engine(f"postgresql+psycopg://postgres@/postgres?host={host}", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE team_load")
    admin.dispose()
    url = f"postgresql+psycopg://postgres@/team_load?host={host}"
    try:
        yield url, _server_version(url)
    finally:
        server.cleanup()


def _server_version(url: str) -> str:
    engine = create_engine(url)
    with engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar())
    engine.dispose()
    return f"PostgreSQL {version}"


def make_project(root: Path, database_url: str | None, faces: int) -> list[int]:
    from core.store.models import Image
    from core.store.project import Project

    with Project.create(root, database_url) as project, project.session() as session:
        session.execute(
            insert(Image),
            [
                {"path": f"faces/{n}.png", "content_hash": f"{n:064x}", "width": 48, "height": 48, "split": "train"}
                for n in range(faces)
            ],
        )
        return list(session.scalars(select(Image.id).order_by(Image.id)))


def run_backend(backend: str, args, workdir: Path) -> dict:
    root = workdir / f"project-{backend}"
    if backend == "postgresql":
        with postgres_database(args.postgres_url, workdir) as (url, version):
            return _measure(backend, version, root, url, args)
    return _measure(backend, f"SQLite {sqlite3.sqlite_version} (WAL)", root, None, args)


def _measure(backend: str, version: str, root: Path, database_url: str | None, args) -> dict:
    faces = make_project(root, database_url, args.faces)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each, as separate studios are
    barrier = context.Barrier(args.annotators + 1)
    outs = [root.parent / f"{backend}-annotator-{i}.json" for i in range(args.annotators)]
    workers = [
        context.Process(
            target=annotate,
            args=(str(root), f"annotator-{i}", args.corrections, faces, args.seed * 1000 + i, barrier, str(out)),
        )
        for i, out in enumerate(outs)
    ]
    load_before = os.getloadavg()
    for worker in workers:
        worker.start()
    barrier.wait(timeout=300)
    released = time.time()
    for worker in workers:
        worker.join()
    wall = time.time() - released
    load_after = os.getloadavg()
    results = [json.loads(out.read_text()) for out in outs]
    crashed = [r for r in results if "crashed" in r]
    if crashed:
        raise RuntimeError(f"{backend}: an annotator process failed:\n{crashed[0]['crashed']}")
    return {
        "backend": backend,
        "server": version,
        "faces": args.faces,
        "annotators": args.annotators,
        "corrections_per_annotator": args.corrections,
        "wall_s": wall,
        "load_before": load_before,
        "load_after": load_after,
        **tally(results),
        **check_log(root, results),
    }


def tally(results: list[dict]) -> dict:
    calls = [call for r in results for call in r["calls"]]
    ok = [c for c in calls if "error" not in c]
    seconds = np.array([c["seconds"] for c in ok]) * 1000
    errors = Counter(f"{c['error']} ({c['problem'] or 'not a storage problem'})" for c in calls if "error" in c)
    span = max(r["finished"] for r in results) - min(r["started"] for r in results)
    written = sum(len(c["ids"]) for c in ok)
    return {
        "calls": len(calls),
        "corrections_written": written,
        "unchanged": sum(1 for c in ok if not c["ids"]),  # the face already had that label: nothing logged
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_examples": sorted({c["message"] for c in calls if "error" in c})[:5],
        "latency_ms": {
            "p50": float(np.percentile(seconds, 50)),
            "p95": float(np.percentile(seconds, 95)),
            "p99": float(np.percentile(seconds, 99)),
            "max": float(seconds.max()),
            "mean": float(seconds.mean()),
        },
        "span_s": span,
        "corrections_per_s": written / span,
    }


def check_log(root: Path, results: list[dict]) -> dict:
    """The corrections log, votes and label rows against what every process was told: the log
    replayed face by face (each annotator's newest vote counts; core.team.votes.decide) must give
    each correction's recorded old label, the stored votes and the face's final label row."""
    from core.store.models import Correction, Label
    from core.store.models import Vote as VoteRow
    from core.store.project import Project
    from core.team.votes import Cast, decide

    with Project.open(root) as project, project.session() as session:
        rows = list(session.scalars(select(Correction).order_by(Correction.id)))
        log = {c.id: (c.annotator, c.image_id, c.old_label, c.new_label) for c in rows}
        labels = {row.image_id: row.label for row in session.scalars(select(Label))}
        stored_votes = {(v.image_id, v.annotator): v.label for v in session.scalars(select(VoteRow))}
    told = {
        cid: (r["annotator"], c["face"], c["label"]) for r in results for c in r["calls"] for cid in c.get("ids", [])
    }
    lost = [
        cid
        for cid, (who, face, label) in told.items()
        if cid not in log or log[cid][:2] + log[cid][3:] != (who, face, label)
    ]
    by_face: dict[int, list[Correction]] = {}
    for row in rows:
        by_face.setdefault(row.image_id, []).append(row)
    stale, wrong_label, replayed_votes = 0, 0, {}
    for face, chain in by_face.items():
        votes: dict[str, Cast] = {}
        decided = None  # the bench's faces start unlabeled
        for row in chain:
            stale += row.old_label != decided
            votes[row.annotator] = Cast(row.id, row.annotator, row.new_label, False, row.created_at)
            decision = decide(list(votes.values()), None)
            decided = decision.label if decision else None
        wrong_label += labels.get(face) != decided
        replayed_votes.update({(face, who): cast.label for who, cast in votes.items()})
    return {
        "log_rows": len(log),
        "lost_writes": len(lost),
        "unaccounted_log_rows": len(set(log) - set(told)),
        "stale_old_labels": stale,
        "label_rows_not_the_votes_decision": wrong_label + sum(1 for face in labels if face not in by_face),
        "votes_not_the_logs": sum(
            1
            for key in replayed_votes.keys() | stored_votes.keys()
            if replayed_votes.get(key, "?") != stored_votes.get(key, "?")
        ),
        "faces_written": len(by_face),
        "faces_written_by_several": sum(1 for chain in by_face.values() if len({c.annotator for c in chain}) > 1),
    }


def run_benchmark(args, save: Callable[[dict], None] | None) -> dict:
    results: dict = {
        "machine": machine_summary(),
        "settings": {
            "annotators": args.annotators,
            "corrections": args.corrections,
            "faces": args.faces,
            "seed": args.seed,
            "postgres": "external (--postgres-url)" if args.postgres_url else "pgserver, default settings",
        },
        "note": args.note,
        "backends": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="fer-team-load-"))
    try:
        for backend in args.backends:
            print(f"{backend}: {args.annotators} annotators x {args.corrections} corrections ...", flush=True)
            results["backends"].append(run_backend(backend, args, workdir))
            if save:
                save(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


# -- the report ------------------------------------------------------------------------------
def render(results: dict) -> str:
    s = results["settings"]
    lines = [
        "## A team labeling at once: PostgreSQL against SQLite",
        "",
        f"`python -m bench.team_load`: {s['annotators']} annotator processes (spawned, each with its own "
        f"connection, released together by a barrier), each making {s['corrections']} calls of "
        f"`core.labeling.set_label(project, face, label, annotator)` on random faces of a {s['faces']:,}-face "
        "project (rows inserted directly) with random labels; on PostgreSQL "
        f"({s['postgres']}, a unix socket on the same machine) and on SQLite (WAL, the project's own file), "
        f"one after the other in the same run. Machine: {results['machine']}; no GPU.",
        "",
        "| backend | corrections written | errors | lost writes | stale old labels | p50 ms | p95 ms | p99 ms | max ms | corrections/s | wall s | load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in results["backends"]:
        lat = b["latency_ms"]
        lines.append(
            f"| {b['server']} | {b['corrections_written']:,} of {b['calls']:,} calls | **{b['errors']}** | "
            f"**{b['lost_writes']}** | {b['stale_old_labels']} | {lat['p50']:.1f} | {lat['p95']:.1f} | "
            f"{lat['p99']:.1f} | {lat['max']:.0f} | {b['corrections_per_s']:.0f} | {b['wall_s']:.1f} | "
            f"{b['load_before'][0]:.1f} → {b['load_after'][0]:.1f} |"
        )
    lines += [
        "",
        'A call that repeats its annotator\'s own vote logs nothing ("written" counts the log rows '
        "the calls returned); latency is per call, from the call to its return, of the calls that did not "
        "fail; corrections/s is the log rows written over the span from the first process's start to the "
        "last one's end; wall s adds the processes' exit. Lost writes: corrections a process was told of "
        "that the log lacks or holds otherwise; stale old labels: log rows whose old label is not the "
        "label the face's votes decided just before (the log replayed).",
        "",
    ]
    for b in results["backends"]:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in b["error_kinds"].items()) or "none"
        lines.append(
            f"- {b['server']}: errors {kinds}; {b['unaccounted_log_rows']} log rows no process was told of; "
            f"{b['label_rows_not_the_votes_decision']} label rows other than what the face's votes decide, "
            f"{b['votes_not_the_logs']} stored votes other than the log's; "
            f"{b['faces_written']:,} faces written, {b['faces_written_by_several']:,} of them by several annotators."
        )
    if results.get("note"):
        lines += ["", results["note"]]
    lines.append("\nRaw results: docs/results/team_load.json.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--corrections", type=int, default=500, help="set_label calls per annotator")
    parser.add_argument("--faces", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", type=lambda v: v.split(","), default=list(BACKENDS), help="postgresql,sqlite")
    parser.add_argument("--postgres-url", help="an empty database on a server of yours (default: a pgserver one)")
    parser.add_argument("--json-out", type=Path, help="save the raw results here as they come")
    parser.add_argument("--render", type=Path, help="render saved results into docs/benchmarks.md and exit")
    parser.add_argument("--note", default="", help="a paragraph for the section (what else ran, a reading)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))}; choose from {', '.join(BACKENDS)}")
    results = saved_or_run(args, run_benchmark)
    if args.render and args.note:  # a reading written after the run is kept with its results
        results["note"] = args.note
        args.render.write_text(json.dumps(results, indent=1))
    body = render(results)
    print(body)
    if not args.no_write:
        write_section("team-load", body, rendered_only=bool(args.render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
