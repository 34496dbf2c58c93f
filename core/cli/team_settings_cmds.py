"""`team`: the overlap setting of a team project (how many faces go to several annotators) and
how far the team has got: votes per annotator, overlap faces done, faces awaiting adjudication."""

from __future__ import annotations

from core.cli.common import EXIT_USAGE, CommandError, opened_project, print_json
from core.team.assignment import TeamSettings, TeamSettingsError, read_settings, team_status, write_settings


def register(sub) -> None:
    p = sub.add_parser(
        "team",
        help="show or set how faces are shared among annotators, and the team's progress",
        description="Show the team's progress; with --overlap/--votes, set what share of the "
        "faces goes to several annotators (so their agreement can be measured). An annotator's "
        "queue with --labels to_vote holds the unlabeled faces and the overlap faces they have "
        "not voted on.",
    )
    p.add_argument("project")
    p.add_argument("--overlap", type=float, metavar="SHARE", help="share of faces for several annotators, e.g. 0.1")
    p.add_argument("--votes", type=int, metavar="K", help="how many annotators label each overlap face (default 3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_team)


def cmd_team(args) -> int:
    changing = args.overlap is not None or args.votes is not None
    with opened_project(args.project, read_only=not changing) as project, project.session() as session:
        if changing:
            current = read_settings(session)
            try:
                settings = TeamSettings(
                    current.overlap_share if args.overlap is None else args.overlap,
                    current.overlap_votes if args.votes is None else args.votes,
                )
            except TeamSettingsError as exc:
                raise CommandError(str(exc), EXIT_USAGE) from None
            write_settings(session, settings)
        status = team_status(session)
    if args.json:
        print_json(status)
        return 0
    print(f"Sharing: {status['settings']}")
    if status["overlap_faces"]:
        done, total = status["overlap_faces_complete"], status["overlap_faces"]
        print(f"Overlap faces with {status['overlap_votes']} votes: {done:,} of {total:,}")
    print(
        f"Votes: {status['votes']:,} on {status['faces_with_votes']:,} faces "
        f"({status['faces_with_2plus_votes']:,} with two or more)"
    )
    for name, count in status["annotators"].items():
        print(f"  {name}: {count:,}")
    print(
        f"Disputed (votes disagree, not adjudicated): {status['disputed_faces']:,}; "
        f"adjudicated: {status['adjudicated_faces']:,}"
    )
    return 0
