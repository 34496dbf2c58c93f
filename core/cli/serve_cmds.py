"""`serve`: the warm worker the studio keeps running while a project is open (hidden from --help;
see core/training/server.py for its commands and events)."""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys

from core.cli.common import opened_project
from core.threads import WARM_WORKER_NICENESS


def register(sub: argparse._SubParsersAction) -> None:
    # No help=: the studio starts it; `main.py serve --help` still describes it.
    p = sub.add_parser(
        "serve",
        description="The studio's warm worker on PROJECT: JSON commands on stdin "
        "(train, refit, ping, cancel, shutdown), JSON events on stdout.",
    )
    p.add_argument("project")
    p.add_argument(
        "--warm-up",
        choices=("all", "refit", "none"),
        default="all",
        help="at start-up, load what a refit reads and compile UMAP (all), only the first, or nothing (default: all)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help=f"lower this process's CPU priority by N (the studio passes {WARM_WORKER_NICENESS}: its GUI then gets "
        "a core first when a key is pressed during a refit)",
    )
    p.set_defaults(handler=cmd_serve)


def events_stream():
    """stdout for events alone: the events get their own copy of file descriptor 1, and fd 1 and
    sys.stdout then point at stderr, so a stray print or a native library's output can never break
    a JSON line the studio reads."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def cmd_serve(args) -> int:
    from core.threads import configure_threads

    plan = configure_threads("worker")  # first: before torch or numba start their pools
    if args.nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(args.nice)
        except OSError:  # not permitted here: run at the priority given
            pass
    out = events_stream()

    if isinstance(sys.stdin, io.TextIOWrapper):  # a replaced stdin (a test's StringIO) reads text already
        sys.stdin.reconfigure(encoding="utf-8", errors="replace")
    with opened_project(args.project) as project:
        from core.training.server import WARM_UPS, WarmWorker

        warm_up = {"all": WARM_UPS, "refit": ("refit",), "none": ()}[args.warm_up]
        server = WarmWorker(project, out, warm_up=warm_up)
        # SIGTERM/SIGINT: like `shutdown` (the job is cancelled and saves what it must).
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda _signum, _frame: server.stop_serving())
        server.start(threads=plan.describe())
        server.serve(sys.stdin)
    return 0
