"""`refit`: one warm-started head refit of a finished run with the current labels, as a new run."""

from __future__ import annotations

import argparse

from core.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, opened_project


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {value}")
    return value


def _at_least_one(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected 1 or more (the newest refit is always kept)")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from core.training.pruning import KEEP_REFITS

    p = sub.add_parser(
        "refit",
        help="refit a run's head with the current labels (a new run; what the studio does live)",
        description="Warm-start a finished head-mode run's head from its checkpoint, train a short schedule on "
        "the cached features with the current labels, and write predictions, embeddings, metrics "
        "and a map placed in the parent's layout as a new run whose parent is that run. Prints "
        "the same events as train, ending with finished and the new run id. Afterwards the "
        "per-face results of superseded refits are pruned (their run rows, labeled sets and "
        "metrics stay).",
    )
    p.add_argument("project")
    p.add_argument("--run", type=int, metavar="R", help="the run to refit (default: the newest finished run)")
    p.add_argument(
        "--steps", type=_count, metavar="N", help="training steps (default: 25 draws of each labeled face, 40 to 60)"
    )
    p.add_argument(
        "--keep-refits",
        type=_at_least_one,
        default=KEEP_REFITS,
        metavar="N",
        help=f"finished refits kept whole; older ones are pruned (default: {KEEP_REFITS})",
    )
    p.add_argument(
        "--soft-labels",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train on the annotators' vote shares of each labeled face (today's votes) instead of its one "
        "label (default: as the run refitted did)",
    )
    p.add_argument(
        "--events",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line on stdout, for the studio",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_refit)


def cmd_refit(args) -> int:
    from core.threads import configure_threads

    configure_threads("worker")  # before torch starts its pools
    from core.cli.train_cmds import _StopFlag
    from core.training.events import ConsoleEvents, JsonEvents
    from core.training.refit import refit
    from core.training.worker import RunError

    events = JsonEvents() if args.events == "json" else ConsoleEvents(quiet=args.quiet)
    stop = _StopFlag()
    stop.install()
    with opened_project(args.project) as project:
        try:
            outcome = refit(
                project,
                args.run,
                events,
                should_stop=stop,
                steps=args.steps,
                keep_refits=args.keep_refits,
                soft_labels=args.soft_labels,
            )
        except RunError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
        finally:
            events.close()
    return {"finished": 0, "cancelled": EXIT_INTERRUPTED}.get(outcome.status, EXIT_FAILED)
