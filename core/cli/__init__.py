"""The headless command line: `python main.py COMMAND ...`. Each command module registers itself."""

from __future__ import annotations

import argparse
import logging
import sys

from core.cli import (
    active_cmds,
    feature_cmds,
    ingest_cmds,
    predict_cmds,
    project_cmds,
    refit_cmds,
    serve_cmds,
    team_cmds,
    team_settings_cmds,
    train_cmds,
)
from core.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, CommandError, storage_exit_code
from core.store.errors import explain_storage_error

COMMAND_MODULES = (
    project_cmds,
    ingest_cmds,
    train_cmds,
    feature_cmds,
    refit_cmds,
    active_cmds,
    serve_cmds,
    predict_cmds,
    team_cmds,
    team_settings_cmds,
)

EPILOG = """\
Run `python main.py` with no command (or with a project folder) to open the studio.

exit codes: 0 success; 1 the work failed (e.g. nothing could be imported);
2 bad arguments, options or input files; 3 the project cannot be opened or created;
4 the project is busy (another program is writing to it): try again; 5 the disk is full,
read-only or failed (nothing saved before is lost); 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="FER studio: semi-supervised facial expression labeling.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def command_names() -> set[str]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into head or similar, which closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A storage failure in any command (a busy database, a full disk) said plainly, with
        # its own exit code; other OSErrors and ValueErrors are bad input; anything else is a bug
        # and keeps its traceback.
        problem = explain_storage_error(exc, getattr(args, "project", None))
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return storage_exit_code(problem)
        if isinstance(exc, (ValueError, OSError)):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise
