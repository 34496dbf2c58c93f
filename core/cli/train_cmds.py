"""`train`, `evaluate` and `runs`."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import fields
from pathlib import Path

from core.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandError,
    opened_project,
    print_json,
)
from core.encoders import DEFAULT_ENCODER, REGISTRY, EncoderError
from core.ssl.config import MethodConfig, SettingError, show_value
from core.ssl.spec import ALGORITHM_NAMES, DEFAULT_ALGORITHM, algorithm_help
from core.training.events import ConsoleEvents, JsonEvents
from core.training.settings import (
    AUTO_STEPS_CAP,
    AUTO_STEPS_FLOOR,
    CHECKPOINTS_PER_RUN,
    INSTANCE_WARMUP_SHARE,
    MODES,
    PROJECTIONS,
    VALIDATIONS_PER_RUN,
    LoopConfig,
    TrainSettings,
)

# Numbers whose default is chosen from the data (core/training/settings.py, TrainSettings.resolved).
AUTO_HELP = {
    "steps": f"(default: auto, from the number of labeled and unlabeled train faces, {AUTO_STEPS_FLOOR} to "
    f"{AUTO_STEPS_CAP}; the run records it)",
    "eval_every": f"(default: auto, 1/{VALIDATIONS_PER_RUN} of the steps)",
    "checkpoint_every": f"(default: auto, 1/{CHECKPOINTS_PER_RUN} of the steps)",
    "instance_warmup": f"(default: auto, {INSTANCE_WARMUP_SHARE:.0%} of the steps)".replace("%", "%%"),
}

# Boolean method switches read better without their prefix: --no-text rather than --no-use-text.
FLAG_NAMES = {"use_semantic": "semantic", "use_text": "text", "use_instance": "instance"}


def _flag(name: str) -> str:
    return "--" + FLAG_NAMES.get(name, name).replace("_", "-")


def _parse_weights(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 1,1,1, not {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers (semantic,text,instance), not {text!r}")
    return values  # three, so mypy narrows the tuple to tuple[float, float, float]


def _add_dataclass_flags(parser: argparse.ArgumentParser, config_cls, dest_prefix: str, title: str) -> None:
    """One flag per field, so every component and every ablation is one flag."""
    group = parser.add_argument_group(title)
    defaults = config_cls()
    for f in fields(config_cls):
        default = getattr(defaults, f.name)
        dest = f"{dest_prefix}{f.name}"
        if default is None:  # "bool | None" or "float | None": None leaves the choice to the algorithm
            kind = str(f.type)
            if kind.startswith("bool"):
                group.add_argument(
                    _flag(f.name),
                    dest=dest,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help="(default: the algorithm's choice)",
                )
            else:
                group.add_argument(
                    _flag(f.name),
                    dest=dest,
                    type=float if kind.startswith("float") else int,
                    default=None,
                    metavar=f.name.upper().split("_")[-1],
                    help=AUTO_HELP.get(f.name, "(default: the algorithm's choice)"),
                )
        elif isinstance(default, bool):
            group.add_argument(
                _flag(f.name),
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"(default: {'on' if default else 'off'})",
            )
        elif isinstance(default, tuple):
            group.add_argument(
                _flag(f.name),
                dest=dest,
                type=_parse_weights,
                default=None,
                metavar="S,T,I",
                help=f"(default: {','.join(str(v) for v in default)})",
            )
        else:
            group.add_argument(
                _flag(f.name),
                dest=dest,
                type=type(default),
                default=None,
                metavar=f.name.upper().split("_")[-1],
                help=f"(default: {default})",
            )


def _collect(args, config_cls, dest_prefix: str) -> dict:
    values = {}
    for f in fields(config_cls):
        value = getattr(args, f"{dest_prefix}{f.name}")
        if value is not None:
            values[f.name] = value
    return values


NOT_SETTINGS = ("help", "events", "resume", "quiet")  # train's flags that are not the run's settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on the project (the worker process)",
        description="Train on the project's labeled and unlabeled train faces and write per-face "
        "predictions, embeddings, a 2-D map and metrics back into the project. "
        "SIGINT/SIGTERM save a checkpoint and mark the run cancelled; --resume continues it.",
    )
    p.add_argument("project")
    p.add_argument(
        "--algorithm",
        choices=sorted(ALGORITHM_NAMES),
        default=DEFAULT_ALGORITHM,
        help=f"{algorithm_help()} (default: {DEFAULT_ALGORITHM})",
    )
    p.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help=" | ".join(f"{name} (default)" if name == DEFAULT_ENCODER else name for name in REGISTRY),
    )
    p.add_argument("--mode", choices=MODES, default="head", help="(default: head)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--loader-workers",
        type=int,
        default=TrainSettings.loader_workers,
        help=f"fine-tune mode: image-decoding processes (default: {TrainSettings.loader_workers})",
    )
    p.add_argument(
        "--strong-views",
        type=int,
        default=TrainSettings.strong_views,
        help=f"head mode: strongly augmented views cached per face (default: {TrainSettings.strong_views})",
    )
    p.add_argument(
        "--projection", choices=PROJECTIONS, default="umap", help="the 2-D map written with the run (default: umap)"
    )
    p.add_argument(
        "--geometry",
        action=argparse.BooleanOptionalAction,
        default=TrainSettings.geometry,
        help="head mode: the face mesh's geometry (468 points, eye line level, scale-free) joins the "
        f"image features; computed once per face and cached (default: {'on' if TrainSettings.geometry else 'off'})",
    )
    p.add_argument(
        "--soft-labels",
        action=argparse.BooleanOptionalAction,
        default=TrainSettings.soft_labels,
        help="each labeled face's target is its annotators' vote shares (frozen at the run's start) instead of "
        "its one label; faces without votes keep their label; the label (the consensus) still picks the class "
        "for the memory bank, class-balanced batches and metrics "
        f"(default: {'on' if TrainSettings.soft_labels else 'off'})",
    )
    p.add_argument(
        "--descriptions",
        metavar="JSON",
        help="class descriptions replacing the project's own descriptions.json (if it has one) "
        "or else core/resources/descriptions.json",
    )
    p.add_argument(
        "--events",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line on stdout, for the studio",
    )
    p.add_argument("--resume", type=int, metavar="RUN", help="continue a cancelled or failed run from its checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_dataclass_flags(p, LoopConfig, "loop_", "training loop")
    _add_dataclass_flags(
        p, MethodConfig, "method_", "method (sitfer levels, thresholds, losses; LEAF and DTA-SNL parts)"
    )
    # What --resume cannot change: every flag of the run's settings, with its default.
    setting_flags = {
        action.dest: (action.option_strings[0], action.default)
        for action in p._actions
        if action.option_strings and action.dest not in NOT_SETTINGS
    }
    p.set_defaults(handler=cmd_train, setting_flags=setting_flags)

    p = sub.add_parser(
        "evaluate",
        help="accuracy of a run's predictions on val or test",
        description="Accuracy, balanced accuracy, per-class recall and confusion matrix of "
        "a run's predictions against the current labels of a split, for the "
        "classifier alone and for the fused prediction.",
    )
    p.add_argument("project")
    p.add_argument("--run", type=int, help="run id (default: the latest finished run)")
    p.add_argument("--split", choices=("val", "test", "train"), default="val")
    p.add_argument(
        "--source",
        metavar="FOLDER|CSV",
        help="evaluate on a labeled set outside the project instead of a split: class folders or a CSV "
        "manifest with a label column; each file's largest face is predicted (the project is not changed)",
    )
    p.add_argument(
        "--faces", choices=("auto", "detect", "none"), default="auto", help="with --source: as predict's --faces"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("runs", help="list the project's training runs")
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)


class _StopFlag:
    """Set by SIGINT/SIGTERM; a second SIGINT interrupts at once."""

    def __init__(self, stopping: str = "stopping after this step and saving a checkpoint"):
        self.requested = False
        self.stopping = stopping  # what the command does now, in words

    def __call__(self) -> bool:
        return self.requested

    def install(self) -> None:
        def handler(signum, _frame):
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.requested = True
            print(f"\n{signal.Signals(signum).name}: {self.stopping} (Ctrl+C again to abort at once)", file=sys.stderr)

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def settings_from_args(args) -> TrainSettings:
    return TrainSettings(
        algorithm=args.algorithm,
        encoder=args.encoder,
        mode=args.mode,
        device=None if args.device == "auto" else args.device,
        method=MethodConfig.from_dict(_collect(args, MethodConfig, "method_")),
        loop=LoopConfig.from_dict(_collect(args, LoopConfig, "loop_")),
        strong_views=args.strong_views,
        projection=args.projection,
        geometry=args.geometry,
        soft_labels=args.soft_labels,
        # Absolute: the worker reads a relative path against the project (its own copy's form).
        descriptions=str(Path(args.descriptions).resolve()) if args.descriptions else None,
        loader_workers=args.loader_workers,
    )


def train_argv(project: str, settings: TrainSettings, events: str = "json") -> list[str]:
    """The `train` command line (after `main.py`) that runs `settings` on `project`: what the
    studio launches. Loop and method settings become flags only where they differ from the
    defaults, so the line stays short and readable in the studio's log."""
    argv = [
        "train",
        str(project),
        "--algorithm",
        settings.algorithm,
        "--encoder",
        settings.encoder,
        "--mode",
        settings.mode,
        "--device",
        settings.device or "auto",
        "--projection",
        settings.projection,
        "--strong-views",
        str(settings.strong_views),
        "--loader-workers",
        str(settings.loader_workers),
        "--events",
        events,
        "--geometry" if settings.geometry else "--no-geometry",
    ]
    if settings.soft_labels:
        argv.append("--soft-labels")
    if settings.descriptions:  # a run's recorded copy is relative to its project
        argv += ["--descriptions", str(Path(project) / settings.descriptions)]
    for config, defaults in ((settings.loop, LoopConfig()), (settings.method, MethodConfig())):
        for f in fields(config):
            value = getattr(config, f.name)
            if value == getattr(defaults, f.name):
                continue
            flag = _flag(f.name)
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + flag[2:])
            elif isinstance(value, tuple):
                argv += [flag, ",".join(repr(float(v)) for v in value)]
            else:
                argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    return argv


def _as_given(flag: str, value) -> str:
    """A flag as the user wrote it: `--text` / `--no-text` for a switch, `--steps 5000` otherwise."""
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {show_value(value)}"


def check_settings(args) -> TrainSettings:
    """The run's settings from the flags, each in range and the descriptions file readable:
    CommandError (exit 2) naming the flag and its value otherwise, before the project is opened."""
    if args.resume is not None:
        given = [
            _as_given(flag, getattr(args, dest))
            for dest, (flag, default) in getattr(args, "setting_flags", {}).items()
            if getattr(args, dest, default) != default
        ]
        if given:
            raise CommandError(
                f"--resume {args.resume} continues the run with the settings it was started with; "
                f"{', '.join(given)} cannot change them. Leave "
                f"{'it' if len(given) == 1 else 'them'} out, or start a new run with them.",
                EXIT_USAGE,
            )
    try:
        settings = settings_from_args(args)
        if args.resume is None:
            settings.validate()
    except SettingError as exc:
        raise CommandError(f"{_flag(exc.name)} {show_value(exc.value)}: {exc.problem}", EXIT_USAGE) from None
    except (ValueError, EncoderError) as exc:
        raise CommandError(f"bad setting: {exc}", EXIT_USAGE) from None
    if args.resume is None and settings.descriptions:
        from core.encoders.text import load_descriptions

        try:
            load_descriptions(Path(settings.descriptions))
        except ValueError as exc:
            raise CommandError(f"--descriptions: {exc}", EXIT_USAGE) from None
    return settings


def cmd_train(args) -> int:
    from core.threads import configure_threads

    configure_threads("worker")  # first: before torch starts its pools
    from core.training.worker import RunError, train

    settings = check_settings(args)
    events = JsonEvents() if args.events == "json" else ConsoleEvents(quiet=args.quiet)
    stop = _StopFlag()
    stop.install()
    distributed = _start_distributed(settings)
    try:
        with opened_project(args.project) as project:
            try:
                outcome = train(project, settings, events, should_stop=stop, resume=args.resume)
            except RunError as exc:
                raise CommandError(str(exc), EXIT_USAGE) from None
            finally:
                events.close()
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    return {"finished": 0, "cancelled": EXIT_INTERRUPTED}.get(outcome.status, EXIT_FAILED)


def _start_distributed(settings: TrainSettings) -> bool:
    """Under torchrun (WORLD_SIZE > 1) join the process group: NCCL on GPUs, gloo on CPUs."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if settings.mode != "finetune":
        raise CommandError("several processes (torchrun) train only in --mode finetune", EXIT_USAGE)
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return True


def cmd_evaluate(args) -> int:
    if args.source:
        result = _evaluate_source(args)
    else:
        from core.training.evaluation import EvaluationError, evaluate_run

        with opened_project(args.project) as project:
            try:
                result = evaluate_run(project, args.run, args.split)
            except EvaluationError as exc:
                raise CommandError(str(exc), EXIT_USAGE) from None
    if args.json:
        print_json(result)
        return 0
    where = result["split"] or result["source"]
    print(f"Run {result['run']} on {where} ({result['classifier']['n']} labeled faces)")
    if result.get("unreadable"):
        print(f"  {result['unreadable']} file(s) gave no face and were left out (--json lists them)")
    for name in ("classifier", "fused"):
        report = result[name]
        print(f"  {name:<10} accuracy {report['accuracy']:.3f}  balanced accuracy {report['balanced_accuracy']:.3f}")
        print(
            "             recall: "
            + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in report["per_class"].items())
        )
    return 0


def _evaluate_source(args) -> dict:
    from core.threads import configure_threads

    configure_threads("worker")
    from core.deploy.external import evaluate_source
    from core.deploy.model import ModelError, load_trained_model
    from core.deploy.predict import FaceOptions, PredictInputError

    with opened_project(args.project, read_only=True) as project:
        try:
            model = load_trained_model(project, args.run)
        except ModelError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        return evaluate_source(model, args.source, FaceOptions(faces=args.faces))
    except PredictInputError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def cmd_runs(args) -> int:
    from core.training.evaluation import list_runs

    with opened_project(args.project) as project:
        runs = list_runs(project)
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print("No runs yet: python main.py train PROJECT")
    for run in runs:
        acc = run["metrics"].get("val_fused_accuracy")
        print(
            f"  run {run['id']:>4}  {run['status']:<9} {run['algorithm']:<10} {run['encoder']:<14} "
            f"{run['mode']:<8} {run['created_at'][:19]}"
            + (f"  val fused acc {acc:.3f}" if acc is not None else "")
            + _lineage(run)
        )
    pruned = sum(run["pruned_at"] is not None for run in runs)
    if pruned:
        print(
            f"{pruned} superseded refit(s) had their per-face predictions pruned; their labeled sets and "
            f"metrics are kept"
        )
    return 0


def _lineage(run: dict) -> str:
    """A refit's parent and whether its per-face results were pruned."""
    if run.get("kind") != "refit":
        return ""
    parent = f"run {run['parent']}" if run["parent"] is not None else "a deleted run"
    return f"  refit of {parent}" + ("  (predictions pruned)" if run["pruned_at"] else "")
