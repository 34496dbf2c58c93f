"""`queue`, `label`, `undo`, `redo` and `history`: the active-learning loop without the studio."""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import asdict

from core.active import LABEL_FILTERS, STRATEGIES, QueueError, QueueFilters, build_queue, queue_advice
from core.cli.common import EXIT_FAILED, EXIT_USAGE, CommandError, opened_project, print_json
from core.labeling import (
    LabelingError,
    LabelStep,
    LeftOut,
    accept_suggestion,
    accept_suggestions,
    adjudicate,
    bulk_label,
    clear_label,
    default_annotator,
    history,
    redo,
    set_label,
    suggestion_for,
    undo,
)
from core.store.models import SPLITS

ACCEPT = "accept"  # LABEL value: take the model's suggestion
CLEAR = "none"  # LABEL value: make the face unlabeled


def _face_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected face ids like 12 or 12,13,20, not {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("no face id given")
    return ids


def _pair(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected two classes like fear,surprise, not {text!r}")
    return parts[0], parts[1]


def register(sub: argparse._SubParsersAction) -> None:
    strategies = "\n".join(
        textwrap.fill(f"{s.name}: {s.description}", 88, initial_indent="  ", subsequent_indent="    ")
        for s in STRATEGIES.values()
    )
    p = sub.add_parser(
        "queue",
        help="the faces to review next, with the reason for each",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rank a run's predictions (default: the latest finished run) and print\n"
        "the faces an annotator should review next, each with a short reason.\n\n"
        f"strategies:\n{strategies}",
    )
    p.add_argument("project")
    p.add_argument("--strategy", choices=list(STRATEGIES), default="margin", help="(default: margin)")
    p.add_argument("--limit", type=int, default=20, help="how many faces (default: 20)")
    p.add_argument("--run", type=int, help="run id (default: the latest finished run)")
    p.add_argument("--split", choices=(*SPLITS, "all"), default="train", help="(default: train)")
    own = ", ".join(f"{s.name}: {s.labels}" for s in STRATEGIES.values() if s.labels != "unlabeled")
    p.add_argument(
        "--labels",
        choices=LABEL_FILTERS,
        help="which faces: unlabeled, labeled, corrected (labeled by an annotator), to_vote (what "
        "--annotator is asked to vote on: unlabeled faces and the team's overlap faces they have not "
        f"voted on; see the team command), all (default: the strategy's own, unlabeled but for {own})",
    )
    p.add_argument("--annotator", help="whose queue, for --labels to_vote (default: the OS user name)")
    p.add_argument("--pseudo-label", metavar="CLASS", help="only faces the model puts in this class")
    p.add_argument(
        "--pair",
        type=_pair,
        metavar="A,B",
        help="only faces whose two most probable classes are A and B, e.g. fear,surprise",
    )
    p.add_argument("--seed", type=int, default=0, help="for --strategy random (default: 0)")
    p.add_argument("--json", action="store_true", help="print a JSON list of queue items")
    p.set_defaults(handler=cmd_queue)

    p = sub.add_parser(
        "label",
        help="set the label of one or more faces (undoable)",
        description="Set a face's label, logged in the corrections log. LABEL is a class "
        f"name or alias, '{ACCEPT}' to take the model's suggestion, or "
        f"'{CLEAR}' to make the face unlabeled. Several faces (12,13,20) make "
        "one undoable step, which leaves faces that already have a label and "
        "faces of val/test as they are unless included.",
    )
    p.add_argument("project")
    p.add_argument("faces", type=_face_ids, metavar="FACE", help="face id, or ids separated by commas")
    p.add_argument("label", metavar="LABEL")
    p.add_argument("--annotator", help="who decides (default: the OS user name)")
    p.add_argument(
        "--adjudicate",
        action="store_true",
        help="one face: the adjudicator's final label, which decides over the annotators' votes",
    )
    p.add_argument(
        "--run", type=int, help="the run whose suggestion is taken or recorded (default: the latest finished run)"
    )
    p.add_argument(
        "--include-labeled",
        action="store_true",
        help="several faces: also relabel those that already have a label (default: left alone)",
    )
    p.add_argument(
        "--include-val-test",
        action="store_true",
        help="several faces: also change faces of the val and test splits, which measure the "
        "model (default: left alone)",
    )
    p.set_defaults(handler=cmd_label)

    for name, verb in (("undo", "take back"), ("redo", "re-apply")):
        p = sub.add_parser(
            name,
            help=f"{verb} the last labeling step",
            description=f"{verb.capitalize()} the last labeling step (a single label or a "
            "whole bulk change), from the corrections log.",
        )
        p.add_argument("project")
        p.add_argument("--annotator", help="only this annotator's steps (default: anyone's)")
        p.set_defaults(handler=cmd_undo if name == "undo" else cmd_redo)

    p = sub.add_parser("history", help="the corrections log, newest first")
    p.add_argument("project")
    p.add_argument("--limit", type=int, default=20, help="(default: 20)")
    p.add_argument("--annotator", help="only this annotator's corrections")
    p.add_argument("--face", type=int, help="only this face's corrections")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_history)


def cmd_queue(args) -> int:
    filters = QueueFilters(
        labels=args.labels,
        pseudo_label=args.pseudo_label,
        pair=args.pair,
        annotator=args.annotator or default_annotator(),
    )
    with opened_project(args.project) as project:
        try:
            items = build_queue(
                project,
                args.run,
                args.strategy,
                args.limit,
                None if args.split == "all" else args.split,
                filters,
                seed=args.seed,
            )
        except QueueError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if args.json:
        print_json([item.to_dict() for item in items])
        return 0
    if not items:
        print("No faces match: the queue is empty.")
        return 0
    print(f"Run {items[0].run_id}, {args.strategy}: {len(items)} face(s) to review")
    print(f"{'rank':>4} {'face':>7} {'score':>7}  {'suggestion':<11} {'conf':>5}  reason")
    for item in items:
        print(
            f"{item.rank:>4} {item.face_id:>7} {item.score:>7.3f}  {item.pseudo_label:<11} "
            f"{item.confidence:>5.2f}  {item.reason}"
        )
    advice = queue_advice(args.strategy, items)
    if advice:
        print(f"note: {advice.detail}", file=sys.stderr)
    return 0


def cmd_label(args) -> int:
    annotator = args.annotator or default_annotator()
    with opened_project(args.project) as project:
        try:
            step = _label_faces(project, args, annotator)
        except LabelingError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if step is None:
        print(
            "Nothing changed: "
            + ("the face already has that label." if len(args.faces) == 1 else "the faces already have that label.")
        )
    elif not step.changes:
        print(f"Nothing changed (left out: {step.left_out.describe()}).")
    else:
        print(f"Labeled by {step.annotator}: {step.describe()}")
    if step is not None and step.left_out:
        print(_include_hint(step.left_out))
    return 0


def _label_faces(project, args, annotator: str) -> LabelStep | None:
    faces = args.faces
    include = {"include_labeled": args.include_labeled, "include_val_test": args.include_val_test}
    if args.adjudicate and (len(faces) > 1 or args.label.lower() in (ACCEPT, CLEAR)):
        raise LabelingError("--adjudicate gives one face one class label")
    if args.label.lower() == ACCEPT:
        if len(faces) > 1:
            return accept_suggestions(project, faces, annotator, args.run, **include)
        return accept_suggestion(project, faces[0], annotator, args.run)
    if args.label.lower() == CLEAR:
        if len(faces) > 1:
            raise LabelingError(f"'{CLEAR}' clears one face at a time")
        return clear_label(project, faces[0], annotator)
    if args.adjudicate:
        return adjudicate(project, faces[0], args.label, annotator)
    if len(faces) > 1:
        return bulk_label(project, faces, args.label, annotator, run_id=args.run, **include)
    # Record what the model proposed, so the log says whether the annotator agreed.
    suggestion = suggestion_for(project, faces[0], args.run)
    return set_label(
        project,
        faces[0],
        args.label,
        annotator,
        suggestion=suggestion.label if suggestion else None,
        run_id=suggestion.run_id if suggestion else args.run,
    )


def _include_hint(left_out: LeftOut) -> str:
    flags = (["--include-labeled"] if left_out.labeled else []) + (["--include-val-test"] if left_out.val_test else [])
    return f"To change the faces left out too, add {' '.join(flags)}."


def _undo_or_redo(args, action) -> int:
    with opened_project(args.project) as project:
        step = action(project, args.annotator)
    if step is None:
        whose = f" by {args.annotator}" if args.annotator else ""
        raise CommandError(f"nothing to {action.__name__}{whose}", EXIT_FAILED)
    print(f"{action.__name__.capitalize()} of {step.annotator}'s step: {step.describe()}")
    return 0


def cmd_undo(args) -> int:
    return _undo_or_redo(args, undo)


def cmd_redo(args) -> int:
    return _undo_or_redo(args, redo)


def cmd_history(args) -> int:
    with opened_project(args.project, read_only=True) as project:
        entries = history(project, args.limit, annotator=args.annotator, face_id=args.face)
    if args.json:
        print_json([asdict(entry) for entry in entries])
        return 0
    if not entries:
        print("No corrections yet.")
    for e in entries:
        change = f"{e.old_label or 'unlabeled'} -> {e.new_label or 'unlabeled'}"
        extra = (
            (f"  (suggested {e.suggestion} by run {e.run_id})" if e.suggestion else "")
            + ("  [undone]" if e.undone_at else "")
            + (f"  batch {e.batch_id[:8]}" if e.batch_id else "")
        )
        print(f"  #{e.id:<6} {e.created_at:%Y-%m-%d %H:%M:%S}  {e.annotator:<12} face {e.face_id:<7} {change}{extra}")
    return 0
