"""FER studio entry point.

python main.py               open the studio (last project, or the demo project)
python main.py PROJECT       open the studio on PROJECT
python main.py COMMAND ...   headless commands (import, stats, export, demo ...); see --help
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from core.cli import command_names

    commands = command_names()
    wants_gui = (
        not argv or (argv[0] == "gui") or (len(argv) == 1 and not argv[0].startswith("-") and argv[0] not in commands)
    )
    if wants_gui:
        from core.threads import configure_threads

        configure_threads("studio")  # compute belongs to the workers it launches (core/threads.py)
        from app.platform_check import uses_xcb, window_problem

        # Qt aborts the process when its X11 plugin cannot load; say what to install instead.
        problem = window_problem() if uses_xcb() else None
        if problem:
            print(problem, file=sys.stderr)
            return 1
        from app.main import run_app

        project = (
            argv[1] if argv and argv[0] == "gui" and len(argv) > 1 else (argv[0] if argv and argv[0] != "gui" else None)
        )
        return run_app(project)
    from core.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
