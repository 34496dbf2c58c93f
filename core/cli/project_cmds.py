"""`init`, `stats` and `export`."""

from __future__ import annotations

import argparse

from core.cli.common import EXIT_PROJECT, EXIT_USAGE, CommandError, opened_project, print_json
from core.export import EXPORT_FORMATS, ExportError, export_project
from core.store.errors import safe_url
from core.store.models import SPLITS
from core.store.project import Project, ProjectError
from core.store.queries import project_stats


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="create an empty project folder",
        description="Create a project: a folder with its database and caches.",
    )
    p.add_argument("project", help="project folder (created if missing)")
    p.add_argument("--database-url", help="SQLAlchemy URL of a shared database (default: SQLite in the folder)")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser(
        "stats",
        help="counts of faces by split, label and source",
        description="Print counts of the project's faces by split, label and label source.",
    )
    p.add_argument("project")
    p.add_argument(
        "--json", action="store_true", help="print JSON (keys images, labeled, unlabeled, by_label, by_split ...)"
    )
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser(
        "export",
        help="export the labeled set and the corrections log",
        description="Write the labeled set with its provenance (labels.csv) and the "
        "corrections log (corrections.csv) to OUT; with --format folders, "
        "also the face images in OUT/SPLIT/LABEL/.",
    )
    p.add_argument("project")
    p.add_argument("out", help="output folder (must be empty unless --overwrite)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="csv")
    p.add_argument("--split", choices=SPLITS, help="export one split only")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty")
    p.set_defaults(handler=cmd_export)


def cmd_init(args) -> int:
    try:
        project = Project.create(args.project, args.database_url)
    except ProjectError as exc:
        raise CommandError(str(exc), EXIT_PROJECT) from None
    print(f"Created project {project.root} (database: {safe_url(project.database_url)})")
    project.close()
    return 0


def cmd_stats(args) -> int:
    with opened_project(args.project, read_only=True) as project, project.session() as session:
        stats = project_stats(session)
    if args.json:
        print_json(stats)
        return 0
    print(f"Project {project.root}")
    print(
        f"  faces: {stats['images']}  labeled: {stats['labeled']}  unlabeled: {stats['unlabeled']}"
        f"  hidden ground truth: {stats['hidden_truth']}"
    )
    for split, counts in stats["by_split"].items():
        if counts["images"]:
            print(
                f"  {split:<6} {counts['images']:>7} faces, {counts['labeled']:>7} labeled, "
                f"{counts['unlabeled']:>7} unlabeled"
            )
    print("  labels: " + ", ".join(f"{k} {v}" for k, v in stats["by_label"].items()))
    if stats["by_source"]:
        print("  label sources: " + ", ".join(f"{k} {v}" for k, v in stats["by_source"].items()))
    print(f"  corrections: {stats['corrections']}  runs: {stats['runs']}")
    return 0


def cmd_export(args) -> int:
    with opened_project(args.project, read_only=True) as project:
        try:
            report = export_project(project, args.out, args.format, split=args.split, overwrite=args.overwrite)
        except ExportError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    print(report.summary())
    return 0
