"""`features`: fill the head-mode feature cache ahead of training (what the studio runs after an import)."""

from __future__ import annotations

import argparse

from core.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, CommandError, opened_project
from core.encoders import DEFAULT_ENCODER, EncoderError, check_spec


def register(sub: argparse._SubParsersAction) -> None:
    from core.training.settings import TrainSettings

    p = sub.add_parser(
        "features",
        help="compute the project's head-mode features ahead of training",
        description="Compute the image features head-mode training reads (every active face, the weak "
        "view, its mirror and --strong-views augmented views) for the faces that lack them, "
        "so the next run starts training at once. Cached features are kept; SIGINT/SIGTERM "
        "stop after the current batch and keep what was computed.",
    )
    p.add_argument("project")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help=f"(default: {DEFAULT_ENCODER}; as for train)")
    p.add_argument(
        "--strong-views",
        type=int,
        default=TrainSettings.strong_views,
        help=f"strongly augmented views per face, as train's flag (default: {TrainSettings.strong_views})",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "onnx", "torch"),
        default="auto",
        help="auto: ONNX Runtime where the encoder has it, else torch (default: auto)",
    )
    p.add_argument(
        "--events",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line on stdout, for the studio",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_features)


def cmd_features(args) -> int:
    from core.threads import configure_threads

    configure_threads("worker")  # first: before torch starts its pools
    from core.cli.train_cmds import _StopFlag
    from core.ssl.config import SettingError
    from core.training.events import ConsoleEvents, JsonEvents
    from core.training.features import fill_cache
    from core.training.settings import SETTINGS_RANGES

    try:
        check_spec(args.encoder)
    except EncoderError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        SETTINGS_RANGES["strong_views"].check("strong_views", args.strong_views)
    except SettingError as exc:
        raise CommandError(f"--strong-views {args.strong_views}: {exc.problem}", EXIT_USAGE) from None
    events = JsonEvents() if args.events == "json" else ConsoleEvents(quiet=args.quiet)
    stop = _StopFlag("stopping after this batch; the features computed are kept")
    stop.install()  # SIGTERM (the studio's Cancel) or Ctrl+C
    with opened_project(args.project) as project:
        try:
            outcome = fill_cache(
                project, args.encoder, events, should_stop=stop, strong_views=args.strong_views, engine=args.engine
            )
        except EncoderError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
        finally:
            events.close()
    return EXIT_INTERRUPTED if outcome.status == "cancelled" else 0
