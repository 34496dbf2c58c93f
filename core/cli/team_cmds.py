"""`agreement`: how far the annotators' votes agree."""

from __future__ import annotations

import argparse

from core.cli.common import EXIT_USAGE, CommandError, opened_project, print_json
from core.store.models import SPLITS
from core.team.agreement import AgreementReport, AnnotatorAgreement
from core.team.project_agreement import ALL_SPLITS, UnknownAnnotatorError, project_agreement
from core.team.reliability import alpha_band, kappa_band


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agreement",
        help="inter-annotator agreement of the votes",
        description="Krippendorff's alpha and Fleiss' kappa of the annotators' votes, overall and per "
        "class; each annotator against the consensus (the face's label): accuracy, Cohen's kappa, "
        "confusion; the class pairs confused most. Faces with votes from two or more annotators are "
        "the ones agreement is measured on; 'no label' votes name no class and are left out.",
    )
    p.add_argument("project")
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON (keys krippendorff_alpha, fleiss_kappa, per_class, annotators, faces_with_votes, "
        "confused_pairs, notes ...)",
    )
    p.add_argument(
        "--split", choices=(*SPLITS, ALL_SPLITS), default=ALL_SPLITS, help="faces of one split (default all)"
    )
    p.add_argument("--annotator", metavar="NAME", help="only the faces NAME voted on (everyone's votes on them)")
    p.add_argument(
        "--count-adjudicated",
        action="store_true",
        help="count adjudications as ratings (by default they are the final word, not a vote)",
    )
    p.set_defaults(handler=cmd_agreement)


def cmd_agreement(args) -> int:
    with opened_project(args.project, read_only=True) as project, project.session() as session:
        try:
            report = project_agreement(
                session, split=args.split, annotator=args.annotator, count_adjudicated=args.count_adjudicated
            )
        except UnknownAnnotatorError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if args.json:
        print_json(report.to_dict())
        return 0
    scope = f"split {args.split}" + (f", faces {args.annotator} voted on" if args.annotator else "")
    print(f"Agreement in {project.root} ({scope})")
    if report.faces_with_votes == 0:
        print("  No votes yet: a face gets a vote when an annotator labels it (main.py label ... --annotator NAME).")
        for note in report.notes[1:]:
            print(f"  note: {note}")
        return 0
    for line in summary_lines(report):
        print(line)
    if args.annotator:
        person = next(a for a in report.annotators if a.name == args.annotator)
        print()
        for line in confusion_lines(person, report.classes):
            print(line)
    return 0


def summary_lines(report: AgreementReport) -> list[str]:
    counted = "counted as ratings" if report.count_adjudicated else "not counted as ratings"
    lines = [
        f"  faces with votes: {report.faces_with_votes}, with votes from 2+ annotators: "
        f"{report.faces_with_2plus_votes} ({report.faces_disagreeing} of them disagree)",
        f"  votes: {report.votes} from {report.annotator_count} annotator(s), {_num(report.mean_votes_per_face, 2)} "
        f"per face; adjudications: {report.adjudicated_votes} ({counted})",
        f"  Krippendorff's alpha (nominal): {_num(report.krippendorff_alpha)}  {alpha_band(report.krippendorff_alpha)}"
        " (Krippendorff: rely on 0.800 and above, tentative from 0.667)",
        f"  Fleiss' kappa: {_num(report.fleiss_kappa)}  {kappa_band(report.fleiss_kappa)} agreement (Landis & Koch)",
        f"  mean vote entropy: {_num(report.mean_vote_entropy_bits, 2)} bits per face with 2+ votes",
        "",
        f"  {'class':<11} {'votes':>6} {'share':>6} {'labels':>6} {'kappa':>6} {'alpha vs rest':>13}",
    ]
    for c in report.per_class:
        lines.append(
            f"  {c.name:<11} {c.votes:>6} {_pct(c.share):>6} {c.consensus_faces:>6} {_num(c.fleiss_kappa):>6} "
            f"{_num(c.alpha_vs_rest):>13}"
        )
    lines += [
        "",
        "  each annotator against the consensus (compared: faces someone else voted on too; sole: their vote only)",
        f"  {'annotator':<16} {'voted':>6} {'compared':>8} {'sole':>5} {'accuracy':>8} {'with sole':>9} "
        f"{'kappa':>6} {'adjudicated':>11}",
    ]
    for a in report.annotators:
        lines.append(
            f"  {a.name[:16]:<16} {a.faces_voted:>6} {a.faces_compared:>8} {a.sole_votes:>5} {_pct(a.accuracy):>8} "
            f"{_pct(a.accuracy_with_sole_votes):>9} {_num(a.cohen_kappa):>6} {a.adjudicated:>11}"
        )
    lines += ["", "  class pairs confused most (pairs of votes on one face):"]
    if not report.confused_pairs:
        lines.append("    none: no two votes on a face differ")
    for pair in report.confused_pairs:
        lines.append(f"    {pair.classes[0]} / {pair.classes[1]}: {pair.count} ({_pct(pair.share)} of differing pairs)")
    lines += [f"  note: {note}" for note in report.notes]
    return lines


def confusion_lines(person: AnnotatorAgreement, classes: list[str]) -> list[str]:
    width = max(len(name) for name in classes) + 1
    lines = [f"  {person.name}'s votes (rows) against the consensus (columns), faces compared: {person.faces_compared}"]
    lines.append("  " + " " * width + "".join(f"{name:>{width}}" for name in classes))
    for name, row in zip(classes, person.confusion, strict=True):
        lines.append(f"  {name:<{width}}" + "".join(f"{count:>{width}}" for count in row))
    return lines


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
