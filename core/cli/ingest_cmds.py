"""`import` and `demo`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from core.classes import UnknownClassError, parse_mapping
from core.cli.common import EXIT_FAILED, EXIT_PROJECT, EXIT_USAGE, CommandError, opened_project, print_json
from core.ingest.demo import DemoSettings, create_demo_project
from core.ingest.importer import (
    ALREADY_PRESENT,
    DETECTOR_CHOICES,
    FACE_MODES,
    ImportOptions,
    ImportProgress,
    ImportReport,
    import_source,
)
from core.ingest.sources import SourceError
from core.store.models import SPLITS
from core.store.project import ProjectError

SHOWN_SKIPS = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import faces from a folder or a CSV manifest",
        description="Import face images into PROJECT (created if missing). SOURCE is a folder (flat: "
        "unlabeled; one sub-folder per class: labeled), a CSV manifest with a header "
        "'path[,label][,split]', or one image file. Every file is checked; problems are "
        "reported per file and never stop the import.",
    )
    p.add_argument("project")
    p.add_argument("source")
    p.add_argument("--split", choices=SPLITS, default="train", help="what the faces are for (default train)")
    p.add_argument(
        "--map",
        action="append",
        metavar="NAME=CLASS",
        help="map a source class name onto an expression (or NAME=skip); repeatable",
    )
    p.add_argument(
        "--unlabeled", action="store_true", help="ignore sub-folder names: import the whole tree without labels"
    )
    p.add_argument(
        "--keep-labels-per-class",
        type=int,
        metavar="N",
        help="semi-supervised protocol: N faces per class keep their label; the others "
        "become unlabeled with their true label kept as hidden ground truth",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --keep-labels-per-class (default 0)")
    p.add_argument(
        "--faces",
        choices=FACE_MODES,
        default="auto",
        help="face detection: auto (only images larger than --crop-max-side), detect (always), none",
    )
    p.add_argument(
        "--detector",
        choices=DETECTOR_CHOICES,
        default="auto",
        help="face detector: blazeface (MediaPipe's, with key points; crops turned so the eyes "
        "are level), haar (OpenCV's cascade), auto (blazeface, or haar with a note "
        "where it cannot run; the default)",
    )
    p.add_argument(
        "--crop-max-side",
        type=int,
        default=ImportOptions.crop_max_side,
        help="in auto mode, images up to this many pixels on their longer side are taken as face crops",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=ImportOptions.margin,
        help="margin around a detected face, as a fraction of its size (default 0.25)",
    )
    p.add_argument("--workers", type=int, help="decoding processes (default: one per CPU core)")
    p.add_argument(
        "--follow-links",
        action="store_true",
        help="follow symbolic links that lead out of a SOURCE folder (by default they "
        "are skipped and listed in the report)",
    )
    p.add_argument("--report", metavar="FILE", help="also write the full report as JSON to FILE")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser(
        "demo",
        help="create the demo project (drawn faces, no data needed)",
        description="Create PROJECT with procedurally drawn faces of the seven "
        "expressions: a few labeled per class, the rest unlabeled with "
        "hidden ground truth, plus a labeled val split.",
    )
    p.add_argument("project")
    defaults = DemoSettings()
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--train-per-class", type=int, default=defaults.train_per_class)
    p.add_argument("--val-per-class", type=int, default=defaults.val_per_class)
    p.add_argument("--labeled-per-class", type=int, default=defaults.labeled_per_class)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=cmd_demo)


class _ProgressBar:
    """tqdm bars for the importer's phases; silent when quiet or not on a terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.phase = ""

    def __call__(self, event: ImportProgress) -> None:
        if self.quiet:
            return
        if event.phase != self.phase:
            self.close()
            self.phase = event.phase
            self.bar = tqdm(
                total=event.total,
                desc=event.phase,
                unit="file" if event.phase == "reading" else "face",
                file=sys.stderr,
                disable=None,
                leave=False,
            )
        if self.bar is not None:
            self.bar.n = event.done
            self.bar.refresh() if event.done == event.total else self.bar.update(0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print_report(report: ImportReport) -> None:
    print(report.summary())
    for skipped in report.skipped[:SHOWN_SKIPS]:
        print(f"  skipped {skipped.path}: {skipped.reason}")
    if len(report.skipped) > SHOWN_SKIPS:
        print(f"  ... and {len(report.skipped) - SHOWN_SKIPS} more (use --report FILE for the full list)")


def cmd_import(args) -> int:
    try:
        options = ImportOptions(
            split=args.split,
            faces=args.faces,
            keep_labels_per_class=args.keep_labels_per_class,
            seed=args.seed,
            mapping=parse_mapping(args.map),
            ignore_folder_names=args.unlabeled,
            crop_max_side=args.crop_max_side,
            margin=args.margin,
            workers=args.workers,
            follow_links=args.follow_links,
            detector=args.detector,
        )
        options.validate()
    except (ValueError, UnknownClassError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    bar = _ProgressBar(args.quiet or args.json)
    with opened_project(args.project, create=True) as project:
        try:
            report = import_source(project, args.source, options, progress=bar)
        except (SourceError, ValueError) as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
        finally:
            bar.close()
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    if args.json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if report.files == 0:
        print("error: the source holds no files", file=sys.stderr)
        return EXIT_FAILED
    if report.imported == 0 and not report.cancelled:
        if all(s.reason.startswith(ALREADY_PRESENT) for s in report.skipped):
            print("Nothing new: every file is already in the project.")
            return 0
        print("error: nothing could be imported", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_demo(args) -> int:
    settings = DemoSettings(
        seed=args.seed,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        labeled_per_class=args.labeled_per_class,
    )
    for name in ("train_per_class", "val_per_class", "labeled_per_class"):
        if getattr(settings, name) < 0:
            raise CommandError(f"--{name.replace('_', '-')} must be 0 or more", EXIT_USAGE)
    bar = _ProgressBar(args.quiet)
    try:
        project, reports = create_demo_project(args.project, settings, progress=bar)
    except ProjectError as exc:
        raise CommandError(str(exc), EXIT_PROJECT) from None
    finally:
        bar.close()
    project.close()
    for report in reports:
        print(report.summary())
    print(f"Demo project ready: {project.root}")
    return 0
