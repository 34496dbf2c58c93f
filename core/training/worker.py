"""The training worker: one run from start to written results, in its own process.

It reads the labeled set from the store at the start (and records it with the run), computes
or loads cached features, trains, and writes back per-face predictions, embeddings, 2-D
projections and metrics. It talks to the studio only through the store and its event stream.
A stop request (SIGINT/SIGTERM, or the studio's Cancel) saves a checkpoint and marks the run
cancelled; `resume` continues it from there.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sqlalchemy import insert, select

from core.classes import class_names
from core.encoders import EncoderError
from core.encoders.text import load_descriptions, project_descriptions_path
from core.ssl import distributed
from core.store.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_KIND_TRAIN,
    RUN_RUNNING,
    Run,
    RunLabel,
    utcnow,
)
from core.store.project import Project
from core.store.queries import project_stats
from core.training.checkpoints import load_checkpoint
from core.training.data import FaceTable, load_face_table
from core.training.events import EtaClock, Event, EventSink, NullEvents
from core.training.geometry import load_head_inputs, without_mesh_message
from core.training.head import build_head_trainer, build_method, check_labels
from core.training.hooks import CheckpointHook, EvalHook, MetricsHook, ProgressHook, StopHook, write_metrics
from core.training.inference import Predictions, predict, predict_batches
from core.training.loop import Trainer
from core.training.results import final_metrics, write_predictions, write_projections
from core.training.settings import TrainSettings
from core.training.soft_labels import SoftTargetsError, freeze_targets, load_frozen_targets


class RunError(RuntimeError):
    """A run that cannot start or resume; the message says why."""


def choose_device(requested: str | None) -> torch.device:
    if requested in (None, "", "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # Under torchrun each process takes the GPU of its local rank.
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise RunError(f"unknown device {requested!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device {requested!r} asked for, but no CUDA GPU is available here")
    return device


@dataclass
class RunOutcome:
    run_id: int
    status: str
    metrics: dict


def train(
    project: Project,
    settings: TrainSettings,
    events: EventSink,
    should_stop: Callable[[], bool] = lambda: False,
    resume: int | None = None,
) -> RunOutcome:
    """Start (or resume) a run and carry it to its end. Never raises for a failure inside the
    run: the run is marked failed and the outcome says so. Under torchrun, rank 0 creates the run
    and writes everything; the other ranks train with it."""
    rank = torch.distributed.get_rank() if distributed.active() else 0
    if rank == 0:
        events.emit(
            Event.PHASE,
            phase="starting",
            message=f"resuming run {resume}" if resume is not None else "creating the run",
        )
    opened: list = [None, None, None]  # run id, settings, error
    if rank == 0:
        try:
            if resume is None:
                if settings.descriptions is None:
                    # The project's own descriptions (the studio's editor) come before the shipped
                    # ones; the run records which file it used, so a resume reads the same. The
                    # path is kept relative to the project, so a moved project still resumes.
                    own = project_descriptions_path(project.root)
                    if own.is_file():
                        settings.descriptions = own.relative_to(project.root).as_posix()
                _check_settings(project, settings)
                settings = _resolve_auto(project, settings)  # the run records the numbers it uses
                opened[:2] = _create_run(project, settings), settings.to_dict()
            else:
                run_id, settings = _reopen_run(project, resume)
                opened[:2] = run_id, settings.to_dict()
        except RunError as exc:
            opened[2] = str(exc)
    if distributed.active():
        torch.distributed.broadcast_object_list(opened, src=0)
    if opened[2] is not None:
        raise RunError(opened[2])
    run_id, settings = opened[0], TrainSettings.from_dict(opened[1])
    if rank != 0:
        events = NullEvents()
    events.emit(
        Event.STARTED,
        run=run_id,
        algorithm=settings.algorithm,
        encoder=settings.encoder,
        mode=settings.mode,
        steps=settings.loop.steps,
        message=f"run {run_id}: {settings.algorithm} on {settings.encoder} ({settings.mode} mode), "
        f"{settings.loop.steps:,} steps",
    )
    for warning in settings.level_warnings():
        events.emit(Event.WARNING, run=run_id, message=warning)
    try:
        return _execute(project, run_id, settings, events, should_stop, resuming=resume is not None)
    except InterruptedError:
        _finish_run(project, run_id, RUN_CANCELLED)
        events.emit(Event.CANCELLED, run=run_id, message=f"run {run_id} cancelled before training started")
        return RunOutcome(run_id, RUN_CANCELLED, {})
    except Exception as exc:  # noqa: BLE001 - the run fails; the project and the caller carry on
        message = f"{type(exc).__name__}: {exc}"
        if rank == 0:
            _finish_run(project, run_id, RUN_FAILED, error=message + "\n" + traceback.format_exc(limit=8))
        events.emit(Event.FAILED, run=run_id, error=message)
        return RunOutcome(run_id, RUN_FAILED, {})


def _check_settings(project: Project, settings: TrainSettings) -> None:
    """Every setting in range and the descriptions file readable, before a run row exists."""
    try:
        settings.validate()
        if settings.descriptions is not None:
            load_descriptions(project.resolve_path(settings.descriptions))
    except (ValueError, EncoderError) as exc:
        raise RunError(str(exc)) from None


def _resolve_auto(project: Project, settings: TrainSettings) -> TrainSettings:
    """The settings with every "auto" number chosen from the project's train faces."""
    with project.session() as session:
        train = project_stats(session)["by_split"]["train"]
    return settings.resolved(train["labeled"], train["unlabeled"])


def _create_run(
    project: Project, settings: TrainSettings, *, kind: str = RUN_KIND_TRAIN, parent_run_id: int | None = None
) -> int:
    """A running run row with the current labeled set of the train split (its RunLabel rows)."""
    device = choose_device(settings.device)
    with project.session() as session:
        run = Run(
            algorithm=settings.algorithm,
            encoder=settings.encoder,
            mode=settings.mode,
            config=settings.to_dict(),
            status=RUN_RUNNING,
            device=str(device),
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=utcnow(),
            kind=kind,
            parent_run_id=parent_run_id,
        )
        session.add(run)
        session.flush()
        run.checkpoint = str(project.store_path(project.cache_dir("checkpoints") / f"run_{run.id}.pt"))
        faces = load_face_table(project, session)
        labeled = faces.where(split="train", labeled=True)
        names = class_names()
        if len(labeled):
            session.execute(
                insert(RunLabel),
                [{"run_id": run.id, "image_id": int(faces.ids[r]), "label": names[faces.labels[r]]} for r in labeled],
            )
        if settings.soft_labels:
            freeze_targets(project, session, run.id, faces.ids[labeled], faces.labels[labeled])
        return run.id


def _reopen_run(project: Project, run_id: int) -> tuple[int, TrainSettings]:
    with project.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise RunError(f"there is no run {run_id} in this project")
        if run.status == RUN_FINISHED:
            raise RunError(f"run {run_id} has already finished")
        if run.status == RUN_RUNNING and run.pid and run.pid != os.getpid():
            from core.store.runs import process_alive

            if process_alive(run.pid) and run.host == socket.gethostname():
                raise RunError(f"run {run_id} is still running (pid {run.pid})")
        checkpoint = project.resolve_path(run.checkpoint) if run.checkpoint else None
        if checkpoint is None or not checkpoint.is_file():
            raise RunError(f"run {run_id} has no checkpoint to resume from")
        try:  # a run stored before its settings were checked this closely
            settings = TrainSettings.from_dict(run.config)
            settings.validate()
        except ValueError as exc:
            raise RunError(
                f"run {run_id} cannot be resumed: its settings are not valid ({exc}); start a new run"
            ) from None
        run.status, run.pid, run.host, run.error, run.finished_at = (
            RUN_RUNNING,
            os.getpid(),
            socket.gethostname(),
            None,
            None,
        )
    return run_id, settings


def _finish_run(project: Project, run_id: int, status: str, error: str | None = None) -> None:
    with project.session() as session:
        run = session.get(Run, run_id)
        if run is None:  # deleted meanwhile: nothing left to mark
            return
        run.status = status
        run.finished_at = utcnow()
        run.error = error


def _run_labels(project: Project, run_id: int, faces: FaceTable) -> np.ndarray:
    """The labels this run trains on: those recorded at its start, not today's."""
    index = {name: i for i, name in enumerate(class_names())}
    with project.session() as session:
        recorded = dict(
            session.execute(select(RunLabel.image_id, RunLabel.label).where(RunLabel.run_id == run_id)).all()
        )
    labels = np.full(len(faces), -1, dtype=np.int64)
    for row, face_id in enumerate(faces.ids):
        if int(face_id) in recorded and faces.splits[row] == "train":
            labels[row] = index[recorded[int(face_id)]]
    return labels


def run_soft_targets(
    project: Project,
    run_id: int,
    settings: TrainSettings,
    faces: FaceTable,
    train_labels: np.ndarray,
    events: EventSink,
) -> np.ndarray | None:
    """The soft targets frozen at the run's start, one row per face (None: hard labels, as
    without --soft-labels, also where no labeled face has split votes), said in the run's log."""
    if not settings.soft_labels:
        return None
    try:
        frozen = load_frozen_targets(project, run_id, faces, train_labels)
    except SoftTargetsError as exc:
        raise RunError(str(exc)) from None
    events.emit(Event.INFO, message=frozen.message)
    return frozen.targets


@dataclass
class PreparedRun:
    """What the two modes hand to the common part of a run."""

    trainer: Trainer
    usable: np.ndarray  # faces that can be predicted
    train_rows: np.ndarray
    predict_all: Callable[[np.ndarray, np.ndarray], Predictions]  # (rows, own bank slot) -> predictions
    facts: dict[str, float] = field(default_factory=dict)  # about the data, written as step-0 metrics


def _execute(
    project: Project,
    run_id: int,
    settings: TrainSettings,
    events: EventSink,
    should_stop: Callable[[], bool],
    resuming: bool,
) -> RunOutcome:
    from core.encoders import get_encoder  # deferred: loading encoders is heavy
    from core.encoders.text import class_text_embeddings, load_descriptions

    device = choose_device(settings.device)
    main = not distributed.active() or torch.distributed.get_rank() == 0
    events.emit(Event.PHASE, phase="encoder", message=f"loading the {settings.encoder} encoder")
    encoder = get_encoder(settings.encoder, device=device)
    events.emit(Event.INFO, message=f"encoder: {encoder.describe()}")
    descriptions = load_descriptions(project.resolve_path(settings.descriptions) if settings.descriptions else None)
    class_text = class_text_embeddings(encoder, descriptions, project.cache_dir("features"))
    with project.session() as session:
        faces = load_face_table(project, session)
    train_labels = _run_labels(project, run_id, faces)
    train_targets = run_soft_targets(project, run_id, settings, faces, train_labels, events)
    checkpoint_path = project.cache_dir("checkpoints") / f"run_{run_id}.pt"

    metrics_hook = MetricsHook(project, run_id, events)
    hooks: list = [StopHook(should_stop)]
    if main:  # one writer: the other ranks only train
        hooks += [ProgressHook(events), metrics_hook]
    prepare = _prepare_head if settings.mode == "head" else prepare_finetune
    prepared = prepare(
        faces,
        train_labels,
        encoder,
        class_text,
        settings,
        device,
        hooks,
        metrics_hook if main else None,
        project=project,
        events=events,
        should_stop=should_stop,
        train_targets=train_targets,
    )
    trainer, train_rows = prepared.trainer, prepared.train_rows
    if main and prepared.facts:
        write_metrics(project, run_id, 0, prepared.facts)
    if main:
        train_ids = torch.from_numpy(np.ascontiguousarray(faces.ids[train_rows], dtype=np.int64))
        trainer.add_hook(CheckpointHook(checkpoint_path, lambda: {"train_face_ids": train_ids}))
    if resuming:
        state = load_checkpoint(checkpoint_path, map_location=device)
        if not np.array_equal(state["train_face_ids"].cpu().numpy(), faces.ids[train_rows]):
            raise RunError("the project's training faces changed since this run started; start a new run")
        trainer.load_state_dict(state)
        events.emit(Event.INFO, message=f"resumed run {run_id} at step {trainer.step}")

    events.emit(
        Event.PHASE,
        phase="training",
        message=f"training {trainer.config.steps:,} steps" + (f" from step {trainer.step:,}" if trainer.step else ""),
    )
    status = trainer.run()
    if not main:
        return RunOutcome(run_id, status, {})
    if status == RUN_CANCELLED:
        _finish_run(project, run_id, RUN_CANCELLED)
        events.emit(
            Event.CANCELLED,
            run=run_id,
            step=trainer.step,
            message=f"run {run_id} cancelled at step {trainer.step}; resume with --resume {run_id}",
        )
        return RunOutcome(run_id, RUN_CANCELLED, {})

    events.emit(
        Event.PHASE, phase="predictions", message=f"predicting and writing {int(prepared.usable.sum()):,} faces"
    )
    rows, preds = write_run_predictions(project, run_id, faces, prepared, events)
    if settings.projection != "none":
        events.emit(
            Event.PHASE,
            phase="map",
            message=f"computing the {settings.projection.upper()} map of {len(rows):,} faces",
            eta_s=estimated_map_seconds(len(rows), settings.projection),
        )
    write_projections(project, run_id, faces.ids[rows], preds.embedding, settings, events)
    final = finish_with_metrics(project, run_id, faces, rows, preds, trainer.step)
    events.emit(Event.FINISHED, run=run_id, metrics=final, message=finished_message(run_id, final))
    return RunOutcome(run_id, RUN_FINISHED, final)


def write_run_predictions(
    project: Project, run_id: int, faces: FaceTable, prepared: PreparedRun, events: EventSink | None = None
) -> tuple[np.ndarray, Predictions]:
    """Predict every usable face (each train face leaving its own bank slot out) and store the
    predictions and embeddings, reporting the faces written; returns the rows predicted and the
    predictions."""
    rows = np.flatnonzero(prepared.usable)
    row_slot = np.full(len(faces), -1, dtype=np.int64)
    row_slot[prepared.train_rows] = np.arange(len(prepared.train_rows))
    preds = prepared.predict_all(rows, row_slot)
    clock = EtaClock()
    clock.eta_s(0, len(rows))
    progress = (
        None
        if events is None
        else (
            lambda done, total: events.emit(
                Event.PROGRESS, phase="predictions", step=done, total=total, eta_s=clock.eta_s(done, total)
            )
        )
    )
    write_predictions(project, run_id, faces.ids[rows], preds, progress=progress)
    return rows, preds


# What the map phase costs, fitted on the idle 2-core machine of docs/benchmarks.md ("The map
# phase's estimate"): a fresh process loads umap-learn's compiled functions from numba's disk cache
# (bootstrap.sh fills it), then the layout's epochs over the faces dominate; umap-learn runs 500
# epochs up to 10,000 faces and 200 above.
UMAP_START_S = 1.5
UMAP_S_PER_FACE = 0.002  # at 500 epochs
UMAP_EPOCHS_SMALL, UMAP_EPOCHS_LARGE, UMAP_SMALL_FACES = 500, 200, 10_000


def estimated_map_seconds(faces: int, projection: str) -> float | None:
    """About how long the map phase takes for this many faces (PCA: a moment)."""
    if projection == "umap":
        epochs = UMAP_EPOCHS_SMALL if faces <= UMAP_SMALL_FACES else UMAP_EPOCHS_LARGE
        return round(UMAP_START_S + UMAP_S_PER_FACE * faces * epochs / UMAP_EPOCHS_SMALL, 0)
    return 1.0 if projection == "pca" else None


def finish_with_metrics(
    project: Project, run_id: int, faces: FaceTable, rows: np.ndarray, preds: Predictions, step: int
) -> dict:
    """The final val/test metrics written at `step`, and the run marked finished."""
    final = final_metrics(faces, rows, preds)
    write_metrics(project, run_id, step, {k: v for k, v in final.items() if isinstance(v, float)})
    _finish_run(project, run_id, RUN_FINISHED)
    return final


def finished_message(run_id: int, final: dict) -> str:
    return f"run {run_id} finished: " + ", ".join(f"{k} {v:.3f}" for k, v in final.items())


def _check_train(train_labels: np.ndarray) -> None:
    try:
        check_labels(train_labels)
    except ValueError as exc:
        raise RunError(str(exc)) from None


def _prepare_head(
    faces,
    train_labels,
    encoder,
    class_text,
    settings,
    device,
    hooks,
    metrics_hook,
    *,
    project,
    events,
    should_stop,
    train_targets=None,
) -> PreparedRun:
    if distributed.active():
        raise RunError("head mode trains in one process; use --mode finetune with torchrun")
    events.emit(
        Event.PHASE,
        phase="features",
        message=f"features of {len(faces):,} faces "
        f"({2 + settings.strong_views} views each; cached after the first run)",
    )
    clock = EtaClock()
    inputs = load_head_inputs(
        project,
        encoder,
        faces,
        settings.strong_views,
        settings.uses_geometry,
        progress=lambda done, total: events.emit(
            Event.PROGRESS, phase="features", step=done, total=total, eta_s=clock.eta_s(done, total)
        ),
        should_stop=should_stop,
        events=events,
    )
    prepared = prepare_head_from_features(
        faces,
        inputs.features,
        inputs.broken,
        train_labels,
        class_text,
        settings,
        device,
        hooks,
        metrics_hook,
        events,
        train_targets,
    )
    if inputs.without_mesh is not None:
        events.emit(Event.INFO, message=without_mesh_message(inputs.without_mesh))
        prepared.facts["faces_without_mesh"] = inputs.without_mesh
    return prepared


def prepare_head_from_features(
    faces: FaceTable,
    features: np.ndarray,
    broken: list[int],
    train_labels: np.ndarray,
    class_text: torch.Tensor,
    settings: TrainSettings,
    device: torch.device,
    hooks: list,
    metrics_hook: MetricsHook | None,
    events: EventSink,
    train_targets: np.ndarray | None = None,
) -> PreparedRun:
    """A head-mode run over features already in memory (`broken`: rows whose image could not be
    read): the trainer, with validation on the val faces when `metrics_hook` is given.
    `train_targets`: soft targets per face row (--soft-labels), None for the hard labels."""
    usable = np.ones(len(faces), dtype=bool)
    usable[broken] = False
    if broken:
        events.emit(Event.INFO, message=f"{len(broken)} face(s) could not be read and are left out")
    train_rows = np.flatnonzero((faces.splits == "train") & usable)
    _check_train(train_labels[train_rows])
    val_rows = np.flatnonzero((faces.splits == "val") & (faces.labels >= 0) & usable)
    if metrics_hook is not None:
        val_x = torch.from_numpy(features[val_rows, 0])
        hooks.append(
            EvalHook(
                lambda: ((val_x[i : i + 1024], None) for i in range(0, len(val_x), 1024)),
                faces.labels[val_rows],
                metrics_hook,
            )
        )
    trainer = build_head_trainer(
        features[train_rows],
        train_labels[train_rows],
        class_text,
        settings,
        device,
        hooks,
        soft_targets=None if train_targets is None else train_targets[train_rows],
    )

    def predict_all(rows, row_slot):
        return predict(
            trainer.ema.module,
            trainer.algorithm,
            torch.from_numpy(features[rows, 0]),
            trainer.step,
            torch.from_numpy(row_slot[rows]),
        )

    return PreparedRun(trainer, usable, train_rows, predict_all)


def prepare_finetune(
    faces,
    train_labels,
    encoder,
    class_text,
    settings,
    device,
    hooks=(),
    metrics_hook=None,
    *,
    project=None,
    events=None,
    should_stop=None,
    train_targets=None,
) -> PreparedRun:
    """A fine-tune run's trainer over the faces' images (train_labels: -1 = unlabeled;
    train_targets: soft targets per face row, or None), and a predictor over any rows. The
    fine-tune benchmark calls it too, so it measures this code."""
    from torch.nn.parallel import DistributedDataParallel

    from core.training.finetune import FineTuneModel, ImageBatches, plain_batches, spatial_pool

    if settings.geometry and events is not None:
        events.emit(
            Event.INFO,
            message="face geometry joins the features in head mode only; this fine-tune run trains on the images alone",
        )
    usable = np.ones(len(faces), dtype=bool)  # unreadable files fail the run, naming the file
    train_rows = np.flatnonzero(faces.splits == "train")
    _check_train(train_labels[train_rows])
    row_slot = np.full(len(faces), -1, dtype=np.int64)
    row_slot[train_rows] = np.arange(len(train_rows))
    labeled = train_rows[train_labels[train_rows] >= 0]
    unlabeled = train_rows[train_labels[train_rows] < 0]
    settings = settings.resolved(len(labeled), len(unlabeled))  # "auto" numbers (a run has them already)
    pool = spatial_pool(encoder.image_tower, encoder.input_size, settings.spatial())
    in_dim = encoder.image_dim if pool is None else pool.channels
    algorithm, head = build_method(settings, in_dim, class_text, len(train_rows), device)
    network = FineTuneModel(encoder.image_tower, head, pool).to(device)
    network.tower.train()
    rank = torch.distributed.get_rank() if distributed.active() else 0
    model: torch.nn.Module = network
    if distributed.active():
        model = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    preprocess = encoder.preprocessor()
    source = ImageBatches(
        faces,
        labeled,
        train_labels[labeled],
        unlabeled,
        row_slot,
        preprocess,
        settings.loop.batch_size,
        settings.loop.unlabeled_ratio if algorithm.uses_unlabeled else 0,
        settings.loop.seed + 1000 * rank,
        device,
        workers=settings.loader_workers,
        balanced=settings.balanced_sampling(),
        soft_targets=None if train_targets is None else train_targets[labeled],
    )
    val_rows = np.flatnonzero((faces.splits == "val") & (faces.labels >= 0))
    if metrics_hook is not None:
        hooks.append(
            EvalHook(
                lambda: plain_batches(
                    faces, val_rows, np.full(len(faces), -1), preprocess, workers=settings.loader_workers
                ),
                faces.labels[val_rows],
                metrics_hook,
            )
        )
    trainer = Trainer(model, algorithm, source, settings.loop, device, list(hooks))

    def predict_all(rows, slots):
        return predict_batches(
            trainer.ema.module,
            algorithm,
            plain_batches(faces, rows, slots, preprocess, workers=settings.loader_workers),
            trainer.step,
        )

    return PreparedRun(trainer, usable, train_rows, predict_all)
