"""`predict` (a trained run on new photos) and `export-model` (a run as ONNX or TorchScript with
its model card)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, opened_project

EVENT_CHOICES = ("text", "json")


def register(sub: argparse._SubParsersAction) -> None:
    from core.ingest.importer import DETECTOR_CHOICES, FACE_MODES

    p = sub.add_parser(
        "predict",
        help="predict the expressions of new photos with a trained run",
        description="Find the faces of image files, folders (walked recursively) or CSV manifests as "
        "import does, and predict each with a finished run: one row per face (source, face index, "
        "box, predicted class, confidence, the fused probability of every class and each level's "
        "prediction). A file that cannot be read or holds no face is a row with the reason. The "
        "project's data is not changed.",
    )
    p.add_argument("project")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or CSV manifests")
    p.add_argument("--run", type=int, help="run id (default: the newest finished run with a checkpoint)")
    p.add_argument("--out", help="write the table to FILE.csv or FILE.json (default: CSV on stdout)")
    p.add_argument(
        "--faces",
        choices=FACE_MODES,
        default="auto",
        help="auto: find faces in images larger than 256 px, take smaller ones whole (as import); "
        "detect: always find faces; none: every image is one face",
    )
    p.add_argument("--detector", choices=DETECTOR_CHOICES, default="auto", help="face detector, as import's")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--events", choices=EVENT_CHOICES, default="text", help="json: JSON lines on stdout (the studio)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser(
        "export-model",
        help="export a trained run as one ONNX or TorchScript file with its model card",
        description="Write OUT_DIR/model.onnx (or model.torchscript.pt), model_card.json and MODEL_CARD.md: "
        "the image encoder, the head and the run's levels (text descriptions and the instance level's bank as "
        "constants) in one graph from uint8 RGB faces to class probabilities, checked against the studio's "
        "own predictions before it is kept; the card gives the preprocessing, the classes, the algorithm and "
        "its settings, the encoder's weights hashes, the labeled set, val and test metrics and known limits.",
    )
    p.add_argument("project")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--run", type=int, help="run id (default: the newest finished run with a checkpoint)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--force", action="store_true", help="replace a model already in OUT_DIR")
    p.add_argument("--events", choices=EVENT_CHOICES, default="text", help="json: JSON lines on stdout (the studio)")
    p.set_defaults(handler=cmd_export_model)


def cmd_predict(args) -> int:
    from core.threads import configure_threads

    configure_threads("worker")  # first: before torch starts its pools
    from core.cli.train_cmds import _StopFlag
    from core.deploy.model import ModelError, load_trained_model
    from core.deploy.predict import FaceOptions, PredictInputError, enumerate_inputs, predict_sources
    from core.deploy.rows import TableError, table_csv, write_table
    from core.training.events import ConsoleEvents, EtaClock, Event, JsonEvents

    if args.events == "json" and not args.out:
        raise CommandError("--events json prints events on stdout: give --out FILE.csv or FILE.json", EXIT_USAGE)
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise CommandError(f"--out {args.out}: the table is written as .csv or .json", EXIT_USAGE)
    events = JsonEvents() if args.events == "json" else ConsoleEvents(quiet=args.quiet or not args.out)
    stop = _StopFlag("stopping after this file; nothing is written")
    stop.install()
    started = time.perf_counter()
    try:
        with opened_project(args.project, read_only=True) as project:
            try:
                items = enumerate_inputs(args.inputs)
                model = load_trained_model(project, args.run, device=args.device)
            except (ModelError, PredictInputError) as exc:
                raise CommandError(str(exc), EXIT_USAGE) from None
        events.emit(Event.STARTED, run=model.run_id, files=len(items), message=f"predicting {len(items):,} files")
        clock = EtaClock()
        try:
            table = predict_sources(
                model,
                [],
                FaceOptions(args.faces, args.detector),
                progress=lambda done, total: events.emit(
                    Event.PROGRESS, phase="predict", step=done, total=total, eta_s=clock.eta_s(done, total)
                ),
                should_stop=stop,
                items=items,
            )
        except InterruptedError as exc:
            events.emit(Event.CANCELLED, message=f"prediction {exc}")
            return EXIT_INTERRUPTED
        seconds = time.perf_counter() - started
        summary = table.summary()
        out: Path | None = None
        if args.out:
            try:
                out = write_table(table, args.out)
            except TableError as exc:
                raise CommandError(str(exc)) from None
        else:
            sys.stdout.write(table_csv(table))
        rate = round(summary["faces"] / seconds, 2) if seconds > 0 else None
        message = (
            f"run {model.run_id}: {summary['faces']:,} face(s) in {summary['files']:,} file(s), "
            f"{summary['errors']:,} file(s) with a problem, {seconds:.1f} s" + (f"; written to {out}" if out else "")
        )
        events.emit(
            Event.FINISHED,
            run=model.run_id,
            out=str(out) if out else None,
            files=summary["files"],
            faces=summary["faces"],
            errors=summary["errors"],
            per_class=summary["per_class"],
            seconds=round(seconds, 3),
            faces_per_s=rate,
            message=message,
        )
        return 0 if summary["faces"] or not items else EXIT_FAILED
    except CommandError as exc:
        _report_failure(events, args.events, exc)
        raise
    finally:
        events.close()


def cmd_export_model(args) -> int:
    from core.threads import configure_threads

    configure_threads("worker")
    from core.deploy.export import ExportError, export_model
    from core.training.events import ConsoleEvents, Event, JsonEvents

    events = JsonEvents() if args.events == "json" else ConsoleEvents()
    try:
        with opened_project(args.project, read_only=True) as project:
            try:
                result = export_model(
                    project,
                    args.out_dir,
                    args.run,
                    args.format,
                    force=args.force,
                    progress=lambda message: events.emit(Event.PHASE, phase="export", message=message),
                )
            except ExportError as exc:
                raise CommandError(str(exc), EXIT_USAGE) from None
        card = result.card
        val = card["metrics"]["val"]
        accuracy = val.get("fused", {}).get("accuracy") if "unavailable" not in val else None
        message = (
            f"run {card['run']['id']} exported as {args.format} to {result.out_dir}: {result.model_path.name}, "
            f"model_card.json, MODEL_CARD.md"
            + (f"; val fused accuracy {accuracy:.3f}" if accuracy is not None else "")
            + f"; checked on {card['check']['faces']} faces, largest difference "
            f"{card['check']['max_abs_difference']:.1g}"
        )
        events.emit(
            Event.FINISHED,
            run=card["run"]["id"],
            out_dir=str(result.out_dir),
            model=str(result.model_path),
            card=str(result.card_path),
            card_md=str(result.card_md_path),
            format=args.format,
            message=message,
        )
        if args.events != "json":
            print(message)
        return 0
    except CommandError as exc:
        _report_failure(events, args.events, exc)
        raise
    finally:
        events.close()


def _report_failure(events, mode: str, exc: CommandError) -> None:
    """A command that fails after its events began ends them with `failed` (the studio reads it)."""
    from core.training.events import Event

    if mode == "json":
        events.emit(Event.FAILED, error=str(exc), message=str(exc))
