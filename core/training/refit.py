"""Live refit: a finished head-mode run's head, warm-started from its checkpoint and trained a
short schedule on the cached features with today's labels, written back as a new run.

A refit is a run like any other (kind "refit", `parent_run_id` its parent, the labeled set it
trained on in `run_labels`, predictions, embeddings, metrics, its own checkpoint), so `runs`,
`evaluate`, provenance and the review queue work on it unchanged, and a refit of a refit chains.
What it continues from the parent: the head and its EMA teacher, the optimiser's moments, the
class thresholds, the memory bank (slot by face; faces labeled or relabeled since get their
label and the teacher's embedding) and the step count, so warm-ups stay behind it. Its learning
rate restarts at a fraction of the run's and decays over the refit's own steps, and its teacher
averages over a window that fits those steps (`refit_ema_decay`). Its map is not
computed from scratch: faces are placed in the layout of the run whose map was (placement.py).
Superseded refits lose their per-face results afterwards (pruning.py).

Only head mode is refitted: a fine-tune run changed its encoder, so cached features no longer
describe its faces; such a parent is refused with a message saying so.

`RefitMemory` is what a long-lived process keeps between refits (the encoder, class text
embeddings, the feature array, the layout); a cold call builds one and drops it.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sqlalchemy import func, select

from core.classes import class_names
from core.ssl.heads import ExpressionHead
from core.ssl.levels import MemoryBank
from core.store.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_KIND_REFIT,
    STATUS_ACTIVE,
    Embedding,
    Image,
    Label,
    Projection,
    Run,
    RunLabel,
)
from core.store.project import Project
from core.store.queries import latest_finished_run_id
from core.training import placement
from core.training.checkpoints import load_checkpoint
from core.training.data import FaceTable, load_face_table
from core.training.events import Event, EventSink, NullEvents
from core.training.geometry import input_width_problem, load_head_inputs
from core.training.hooks import CheckpointHook, MetricsHook, StopHook
from core.training.loop import Hook, Trainer
from core.training.pruning import KEEP_REFITS, prune_refits
from core.training.results import store_projection
from core.training.settings import TrainSettings
from core.training.worker import (
    RunError,
    RunOutcome,
    _create_run,
    _finish_run,
    _run_labels,
    choose_device,
    finish_with_metrics,
    finished_message,
    prepare_head_from_features,
    run_soft_targets,
    write_run_predictions,
)

# The refit's schedule (docs/benchmarks.md, "Live refit", shows how these were chosen).
REFIT_LABELED_PASSES = 25  # draws of each labeled face, so a new label is seen often enough
# 40 steps recovered 97-99% of a full run's accuracy on the demo; the cap is time: on FER2013
# (27.5k train faces) 60 steps took 3.8 s and the predictions over the memory bank 4.1 s of a
# 10.5 s refit on one idle core (docs/benchmarks.md, "Live refit"), against a budget of 30 s
# that a busy machine can triple.
REFIT_MIN_STEPS, REFIT_MAX_STEPS = 40, 60
REFIT_LR_SCALE = 0.5  # of the run's learning rate, decayed to a tenth over the refit
REFIT_EMA_HORIZON = 4  # the teacher averages over about a quarter of the refit, not the run's long window


def refit_steps(labeled: int, batch_size: int) -> int:
    """The default number of steps for a refit over `labeled` labeled train faces."""
    needed = math.ceil(REFIT_LABELED_PASSES * labeled / max(batch_size, 1) / 10) * 10
    return int(min(REFIT_MAX_STEPS, max(REFIT_MIN_STEPS, needed)))


def refit_ema_decay(run_decay: float, steps: int) -> float:
    """The teacher's decay during a refit: the run's, unless the refit is too short for it (a
    0.99 teacher would keep two thirds of the parent after 40 steps, and the corrections would
    hardly show in the predictions it writes)."""
    return max(0.0, min(run_decay, 1 - REFIT_EMA_HORIZON / max(steps, 1)))


@dataclass
class RefitMemory:
    """What a warm process keeps between refits, each part checked against what the next refit
    needs and reloaded when it changed (another encoder, other descriptions, other faces)."""

    encoder_spec: str | None = None
    encoder: object | None = None
    device: torch.device | None = None
    class_text: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    features_key: tuple | None = None
    features: np.ndarray | None = None
    broken: list[int] = field(default_factory=list)
    layout: placement.Layout | None = None

    def encoder_for(self, spec: str, device: torch.device, events: EventSink):
        if self.encoder is None or (self.encoder_spec, self.device) != (spec, device):
            from core.encoders import get_encoder  # deferred: loading encoders is heavy

            _phase(events, "encoder", f"loading the {spec} encoder")
            self.encoder, self.encoder_spec, self.device = get_encoder(spec, device=device), spec, device
            self.features_key = self.features = None
            events.emit(Event.INFO, message=f"encoder: {self.encoder.describe()}")
        else:
            _phase(events, "encoder", f"the {spec} encoder is loaded already")
        return self.encoder

    def class_text_for(self, project: Project, settings: TrainSettings) -> torch.Tensor:
        from core.encoders.text import class_text_embeddings, descriptions_digest, load_descriptions

        descriptions = load_descriptions(project.resolve_path(settings.descriptions) if settings.descriptions else None)
        key = (settings.encoder, descriptions_digest(descriptions))
        if key not in self.class_text:
            self.class_text = {key: class_text_embeddings(self.encoder, descriptions, project.cache_dir("features"))}
        return self.class_text[key]

    def features_for(
        self,
        project: Project,
        faces: FaceTable,
        settings: TrainSettings,
        events: EventSink,
        should_stop: Callable[[], bool],
    ) -> tuple[np.ndarray, list[int]]:
        key = (settings.encoder, settings.strong_views, settings.uses_geometry, str(project.root), faces.ids.tobytes())
        if self.features is None or self.features_key != key:
            _phase(events, "features", f"reading the cached features of {len(faces)} faces")
            inputs = load_head_inputs(
                project,
                self.encoder,
                faces,
                settings.strong_views,
                settings.uses_geometry,
                progress=lambda done, total: events.emit(Event.PROGRESS, phase="features", step=done, total=total),
                should_stop=should_stop,
            )
            self.features, self.broken = inputs.features, inputs.broken
            self.features_key = key
        else:
            _phase(events, "features", f"the features of {len(faces)} faces are in memory")
        return self.features, self.broken

    def prime(
        self, project: Project, parent_run_id: int | None = None, should_stop: Callable[[], bool] = lambda: False
    ) -> int | None:
        """Load what a refit of `parent_run_id` (None: the newest finished run) reads: encoder,
        class text, features and layout, so that the first refit costs what later ones do.
        The run primed for, or None where there is nothing to refit."""
        try:
            parent = _resolve_parent(project, parent_run_id)
        except RunError:
            return None
        quiet = NullEvents()
        self.encoder_for(parent.settings.encoder, choose_device(parent.settings.device), quiet)
        self.class_text_for(project, parent.settings)
        with project.session() as session:
            faces = load_face_table(project, session)
        self.features_for(project, faces, parent.settings, quiet, should_stop)
        if parent.settings.projection != "none":
            self.layout_for(project, parent.layout_run)
        return parent.id

    def layout_for(self, project: Project, run_id: int) -> placement.Layout | None:
        """The map of `run_id` with the embeddings it was computed from (None: it has none)."""
        if self.layout is None or self.layout.run_id != run_id:
            self.layout = _read_layout(project, run_id)
        return self.layout


@dataclass
class Parent:
    id: int
    settings: TrainSettings
    checkpoint: str
    labels: dict[int, str]  # its labeled set: face id -> class name
    layout_run: int  # the run whose map a refit is placed in


def refit(
    project: Project,
    parent_run_id: int | None,
    events: EventSink,
    *,
    memory: RefitMemory | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    steps: int | None = None,
    keep_refits: int = KEEP_REFITS,
    soft_labels: bool | None = None,
) -> RunOutcome:
    """One refit of `parent_run_id` (None: the newest finished run) with the current labels, as
    a new run. `steps`: None for `refit_steps` of the labeled set; `soft_labels`: None for the
    parent's choice (with soft labels, today's votes are the refit's targets). Raises RunError when it cannot
    start (no such run, not finished, fine-tune mode, no checkpoint); a failure once the run
    exists marks it failed and the outcome says so, like `train`."""
    memory = memory if memory is not None else RefitMemory()
    started = time.perf_counter()
    _phase(events, "starting", "starting a refit")
    parent = _resolve_parent(project, parent_run_id)
    labeled = _count_labeled(project)
    steps = refit_steps(labeled, parent.settings.loop.batch_size) if steps is None else steps
    if steps < 0:
        raise RunError(f"a refit needs 0 or more steps, not {steps}")
    settings = TrainSettings.from_dict(parent.settings.to_dict())
    settings.loop.steps = steps  # the refit's own; its trainer continues from the parent's step
    if soft_labels is not None:
        settings.soft_labels = soft_labels
    run_id = _create_run(project, settings, kind=RUN_KIND_REFIT, parent_run_id=parent.id)
    events.emit(
        Event.STARTED,
        run=run_id,
        parent=parent.id,
        algorithm=settings.algorithm,
        encoder=settings.encoder,
        mode=settings.mode,
        steps=steps,
        message=f"run {run_id}: refit of run {parent.id} ({settings.algorithm} on {settings.encoder}, "
        f"{steps} steps, {labeled} labeled faces)",
    )
    try:
        return _execute_refit(project, run_id, parent, settings, events, memory, should_stop, keep_refits, started)
    except InterruptedError:
        return _cancelled(project, run_id, events)
    except Exception as exc:  # noqa: BLE001 - the run fails; the project and the caller carry on
        message = f"{type(exc).__name__}: {exc}"
        _discard_checkpoint(project, run_id)
        _finish_run(project, run_id, RUN_FAILED, error=message + "\n" + traceback.format_exc(limit=8))
        events.emit(Event.FAILED, run=run_id, error=message)
        return RunOutcome(run_id, RUN_FAILED, {})


def _phase(events: EventSink, phase: str, message: str) -> None:
    events.emit(Event.PHASE, phase=phase, message=message)


def _discard_checkpoint(project: Project, run_id: int) -> None:
    """A refit that did not finish is never resumed (`train --resume` would continue it as a
    run): the next refit starts from the parent again."""
    with project.session() as session:
        run = session.get(Run, run_id)
        if run is None:  # deleted meanwhile: nothing left to discard
            return
        path = project.resolve_path(run.checkpoint) if run.checkpoint else None
        run.checkpoint = None
    if path is not None:
        path.unlink(missing_ok=True)


def _cancelled(project: Project, run_id: int, events: EventSink) -> RunOutcome:
    _discard_checkpoint(project, run_id)
    _finish_run(project, run_id, RUN_CANCELLED)
    events.emit(
        Event.CANCELLED,
        run=run_id,
        message=f"refit {run_id} cancelled (a refit is not resumed: the next one starts from the same parent)",
    )
    return RunOutcome(run_id, RUN_CANCELLED, {})


def _resolve_parent(project: Project, run_id: int | None) -> Parent:
    with project.session() as session:
        if run_id is None:
            run_id = latest_finished_run_id(session)
            if run_id is None:
                raise RunError("there is no finished run to refit; train one first: python main.py train PROJECT")
        run = session.get(Run, run_id)
        if run is None:
            raise RunError(f"there is no run {run_id} in this project")
        if run.status != RUN_FINISHED:
            raise RunError(f"run {run_id} is {run.status}, not finished; only a finished run can be refitted")
        if run.mode != "head":
            raise RunError(
                f"run {run_id} was trained in fine-tune mode ({run.mode}); a refit trains a head on cached "
                f"features, which no longer describe a fine-tuned encoder's faces: refit a head-mode run "
                f"or train a new run"
            )
        if run.predictions_pruned_at is not None or not run.checkpoint:
            raise RunError(
                f"run {run_id} is a superseded refit whose results and checkpoint were pruned; "
                f"refit a newer run (the default: the newest finished run)"
            )
        checkpoint = project.resolve_path(run.checkpoint)
        if not checkpoint.is_file():
            raise RunError(f"run {run_id} has no checkpoint at {checkpoint} to start a refit from")
        try:
            settings = TrainSettings.from_dict(run.config)
        except (TypeError, ValueError) as exc:
            raise RunError(f"run {run_id}'s recorded settings cannot be read ({exc}); train a new run") from None
        labels = dict(session.execute(select(RunLabel.image_id, RunLabel.label).where(RunLabel.run_id == run_id)).all())
        return Parent(run_id, settings, str(checkpoint), labels, _layout_run(session, run))


def _layout_run(session, run: Run) -> int:
    """The nearest ancestor (or the run itself) whose map was computed rather than placed: the
    layout every refit of its line is placed in."""
    seen = set()
    while run.kind == RUN_KIND_REFIT and run.parent_run_id is not None and run.id not in seen:
        seen.add(run.id)
        parent = session.get(Run, run.parent_run_id)
        if parent is None:
            break
        run = parent
    return run.id


def _count_labeled(project: Project) -> int:
    """Labeled active train faces: the labeled set the refit will record."""
    with project.session() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Label)
            .join(Image, Image.id == Label.image_id)
            .where(Image.split == "train", Image.status == STATUS_ACTIVE)
        )
        return count or 0  # COUNT always gives a row; the 0 is for the type


class _RefitProgress(Hook):
    """Progress over the refit's own steps (the trainer counts on from the parent's)."""

    priority = 10

    def __init__(self, events: EventSink, start: int, steps: int, min_interval: float = 0.5):
        self.events, self.start, self.steps, self.min_interval = events, start, steps, min_interval
        self.began = self.last = 0.0

    def before_run(self, trainer: Trainer) -> None:
        self.began = time.perf_counter()

    def after_step(self, trainer: Trainer, result) -> None:
        now, done = time.perf_counter(), trainer.step - self.start
        if now - self.last < self.min_interval and done < self.steps:
            return
        self.last = now
        eta = (now - self.began) / done * (self.steps - done) if done else None
        self.events.emit(
            Event.PROGRESS,
            phase="training",
            step=done,
            total=self.steps,
            eta_s=round(eta, 1) if eta is not None else None,
        )


def _execute_refit(
    project: Project,
    run_id: int,
    parent: Parent,
    settings: TrainSettings,
    events: EventSink,
    memory: RefitMemory,
    should_stop: Callable[[], bool],
    keep_refits: int,
    started: float,
) -> RunOutcome:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    device = choose_device(settings.device)
    state = load_checkpoint(parent.checkpoint, map_location=device)
    memory.encoder_for(settings.encoder, device, events)
    class_text = memory.class_text_for(project, settings)
    with project.session() as session:
        faces = load_face_table(project, session)
    train_labels = _run_labels(project, run_id, faces)
    train_targets = run_soft_targets(project, run_id, settings, faces, train_labels, events)
    lap("load")
    features, broken = memory.features_for(project, faces, settings, events, should_stop)
    lap("features")

    steps = settings.loop.steps
    assert steps is not None  # refit() sets the refit's own steps before it gets here
    _phase(events, "training", f"refitting the head for {steps} steps")
    start_step = int(state["step"])
    loop_settings = TrainSettings.from_dict(settings.to_dict())
    loop_settings.loop.steps = start_step + steps
    metrics_hook = MetricsHook(project, run_id, events)
    hooks = [StopHook(should_stop), _RefitProgress(events, start_step, steps), metrics_hook]
    # No validation during the refit (metrics_hook=None): its predictions give the val metrics at
    # its last step anyway, and at FER2013 size each pass over val costs seconds of instance level.
    prepared = prepare_head_from_features(
        faces, features, broken, train_labels, class_text, loop_settings, device, hooks, None, events, train_targets
    )
    trainer = prepared.trainer
    warm_start(
        trainer,
        state,
        faces,
        prepared.train_rows,
        train_labels,
        parent.labels,
        steps,
        seed=settings.loop.seed + run_id,
    )
    if trainer.run() == RUN_CANCELLED:
        return _cancelled(project, run_id, events)
    train_ids = torch.from_numpy(np.ascontiguousarray(faces.ids[prepared.train_rows], dtype=np.int64))
    CheckpointHook(project.cache_dir("checkpoints") / f"run_{run_id}.pt", lambda: {"train_face_ids": train_ids}).save(
        trainer
    )
    lap("training")

    _phase(events, "predictions", f"writing predictions for {int(prepared.usable.sum())} faces")
    rows, preds = write_run_predictions(project, run_id, faces, prepared)
    lap("predictions")
    if settings.projection != "none":
        _phase(events, "map", f"placing the faces in the map of run {parent.layout_run}")
        _write_placed_map(
            project, run_id, memory.layout_for(project, parent.layout_run), faces.ids[rows], preds.embedding, events
        )
    lap("map")
    final = finish_with_metrics(project, run_id, faces, rows, preds, trainer.step)
    pruned = prune_refits(project, keep_latest=keep_refits, protect={run_id, parent.id})
    lap("prune")
    timings["total"] = round(time.perf_counter() - started, 3)
    message = f"refit of run {parent.id}: " + finished_message(run_id, final)
    if pruned.runs:
        message += f"; {pruned.describe()}"
    events.emit(
        Event.FINISHED,
        run=run_id,
        parent=parent.id,
        metrics=final,
        pruned=pruned.as_dict(),
        timings_s=timings,
        message=message,
    )
    return RunOutcome(run_id, RUN_FINISHED, final)


def warm_start(
    trainer: Trainer,
    state: dict,
    faces: FaceTable,
    train_rows: np.ndarray,
    train_labels: np.ndarray,
    parent_labels: dict[int, str],
    steps: int,
    seed: int,
) -> None:
    """The parent's head, teacher, optimiser moments, thresholds and bank into `trainer`, which
    then runs `steps` more steps from the parent's step on a fresh learning-rate schedule, drawing
    batches from `seed` (each refit its own: a chain of refits then sees every unlabeled face)."""
    # The run's own learning rates, before the parent's optimiser state (its refit's, for a
    # refit of a refit) replaces them: a chain must not shrink them refit after refit.
    run_lrs = [group["initial_lr"] for group in trainer.optimizer.param_groups]
    if not isinstance(trainer.model, ExpressionHead):
        raise RunError(f"only a head-mode run can be refitted, not one that trains a {type(trainer.model).__name__}")
    problem = input_width_problem(state["model"], trainer.model.input_norm.normalized_shape[0])
    if problem:
        raise RunError(f"the parent run cannot be refitted: {problem}")
    trainer.model.load_state_dict(state["model"])
    trainer.ema.module.load_state_dict(state["ema"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.algorithm.load_state_dict({**state["algorithm"], "bank": None})
    bank = trainer.algorithm.bank
    if bank is not None and state["algorithm"].get("bank") is not None:
        _carry_bank(trainer, bank, state, faces, train_rows, train_labels, parent_labels)
    trainer.step = int(state["step"])
    trainer.ema.decay = refit_ema_decay(trainer.ema.decay, steps)
    for group, lr in zip(trainer.optimizer.param_groups, run_lrs):
        group["lr"] = group["initial_lr"] = lr * REFIT_LR_SCALE
    trainer.source.load_state_dict({"generator": torch.Generator().manual_seed(seed).get_state()})
    torch.manual_seed(seed)  # the head's dropout
    total = max(steps, 1)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(
        trainer.optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )


def _carry_bank(
    trainer: Trainer,
    bank: MemoryBank,
    state: dict,
    faces: FaceTable,
    train_rows: np.ndarray,
    train_labels: np.ndarray,
    parent_labels: dict[int, str],
) -> None:
    """The parent's memory bank, slot by face; a face labeled or relabeled since takes its new
    label with the parent teacher's embedding, a face whose label was cleared leaves the bank."""
    old = state["algorithm"]["bank"]
    parent_slot = {int(face): slot for slot, face in enumerate(state["train_face_ids"].tolist())}
    ids = faces.ids[train_rows]
    mine = [slot for slot, face in enumerate(ids) if int(face) in parent_slot]
    theirs = [parent_slot[int(ids[slot])] for slot in mine]
    bank.features.zero_()
    bank.labels.fill_(-1)
    bank.top_k = int(old["top_k"])
    if mine:
        mine_t, theirs_t = torch.tensor(mine), torch.tensor(theirs)
        bank.features[mine_t.to(bank.features.device)] = old["features"][theirs_t].to(bank.features.device)
        bank.labels[mine_t.to(bank.labels.device)] = old["labels"][theirs_t].to(bank.labels.device)
    index = {name: i for i, name in enumerate(class_names())}
    before = np.array([index.get(parent_labels.get(int(face), ""), -1) for face in ids])
    now = train_labels[train_rows]
    changed = np.flatnonzero((now >= 0) & (now != before))
    cleared = np.flatnonzero((now < 0) & (before >= 0))
    device = bank.features.device
    if len(changed):
        x = trainer.source.features[torch.from_numpy(changed).to(trainer.source.features.device), 0].float()
        with torch.no_grad():
            embedding = trainer.ema.module(x.to(device)).embedding
        bank.update(torch.from_numpy(changed).to(device), embedding, torch.from_numpy(now[changed]).to(device))
    if len(cleared):
        bank.labels[torch.from_numpy(cleared).to(bank.labels.device)] = -1


def _read_layout(project: Project, run_id: int) -> placement.Layout | None:
    with project.session() as session:
        coords: dict[str, dict[int, tuple[float, float]]] = {}
        for face, method, x, y in session.execute(
            select(Projection.image_id, Projection.method, Projection.x, Projection.y).where(
                Projection.run_id == run_id
            )
        ):
            coords.setdefault(method, {})[face] = (x, y)
        if not coords:
            return None
        vectors = {
            face: vector
            for face, vector in session.execute(
                select(Embedding.image_id, Embedding.vector).where(
                    Embedding.run_id == run_id, Embedding.vector.is_not(None)
                )
            )
            if vector is not None  # the query leaves NULLs out; this tells the type checker
        }
        run = session.get(Run, run_id)
        if run is None:  # deleted meanwhile: no layout to place in
            return None
        seed = (run.config or {}).get("loop", {}).get("seed", 0)
    face_ids = np.array(sorted(set(vectors).intersection(*[set(c) for c in coords.values()])), dtype=np.int64)
    if not len(face_ids):
        return None
    embeddings = np.stack([np.frombuffer(vectors[int(face)], dtype=np.float32) for face in face_ids])
    return placement.Layout(
        run_id,
        face_ids,
        embeddings,
        {m: np.array([c[int(face)] for face in face_ids], dtype=np.float32) for m, c in coords.items()},
        seed=int(seed or 0),
    )


def _write_placed_map(
    project: Project,
    run_id: int,
    layout: placement.Layout | None,
    face_ids: np.ndarray,
    embeddings: np.ndarray,
    events: EventSink,
) -> None:
    if layout is None:
        events.emit(Event.INFO, message="the parent run has no map to place the faces in; no map is written")
        return
    placed = placement.place(layout, face_ids, embeddings)
    methods = [m for m in ("pca", "umap") if m in placed]
    for method in methods:
        store_projection(project, run_id, face_ids, method, placed[method])
        events.emit(
            Event.MAP,
            run=run_id,
            method=method,
            final=method == methods[-1],
            message=f"the {method.upper()} map is written (faces placed in run {layout.run_id}'s map)",
        )
