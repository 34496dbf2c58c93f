"""The loop's hooks used by the worker: progress events, metrics to the store, periodic
validation of the EMA teacher, checkpoints."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import insert

from core.classes import class_names
from core.ssl.distributed import any_rank
from core.store.models import Metric, utcnow
from core.store.project import Project
from core.training.checkpoints import save_checkpoint
from core.training.events import Event, EventSink, clean_number
from core.training.inference import predict_batches
from core.training.loop import Hook, Trainer
from core.training.metrics import classification_report


class ProgressHook(Hook):
    priority = 10

    def __init__(self, events: EventSink, min_interval: float = 0.5):
        self.events = events
        self.min_interval = min_interval
        self.last = 0.0
        self.started = 0.0
        self.start_step = 0

    def before_run(self, trainer: Trainer) -> None:
        self.started = time.perf_counter()
        self.start_step = trainer.step

    def after_step(self, trainer: Trainer, result) -> None:
        now = time.perf_counter()
        total = trainer.cadence.steps
        if now - self.last < self.min_interval and trainer.step < total:
            return
        self.last = now
        done = trainer.step - self.start_step
        eta = (now - self.started) / done * (total - trainer.step) if done else None
        self.events.emit(
            Event.PROGRESS,
            phase="training",
            step=trainer.step,
            total=total,
            eta_s=round(eta, 1) if eta is not None else None,
        )


class MetricsHook(Hook):
    """Averages the step logs over `log_every` steps; writes them and the class thresholds to
    the store (one transaction) and as a metrics event."""

    priority = 20

    def __init__(self, project: Project, run_id: int, events: EventSink):
        self.project = project
        self.run_id = run_id
        self.events = events
        self.sums: dict[str, torch.Tensor | float] = defaultdict(float)  # tensors stay on their device
        self.count = 0
        self.pending: dict[str, float] = {}  # values from other hooks (validation), sent with the next flush

    def after_step(self, trainer: Trainer, result) -> None:
        for key, value in result.logs.items():  # device tensors are summed where they are, read at flush
            self.sums[key] += value.float() if isinstance(value, torch.Tensor) else value
        self.count += 1
        if trainer.step % trainer.cadence.log_every == 0 or trainer.step == trainer.cadence.steps or self.pending:
            self.flush(trainer)

    def flush(self, trainer: Trainer) -> None:
        values = {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}
        thresholds = trainer.algorithm.thresholds().tolist()
        values.update({f"threshold_{name}": t for name, t in zip(class_names(), thresholds)})
        values.update(self.pending)
        self.sums.clear()
        self.count = 0
        self.pending = {}
        write_metrics(self.project, self.run_id, trainer.step, values)
        self.events.emit(Event.METRICS, step=trainer.step, values={k: clean_number(v) for k, v in values.items()})


def write_metrics(project: Project, run_id: int, step: int, values: dict[str, float]) -> None:
    rows = [
        {"run_id": run_id, "step": step, "name": k, "value": float(v), "created_at": utcnow()}
        for k, v in values.items()
        if v is not None and np.isfinite(v)
    ]
    if rows:
        with project.session() as session:
            session.execute(insert(Metric), rows)


class EvalHook(Hook):
    """Validation accuracy of the EMA teacher, classifier and fused, every `eval_every` steps.

    For watching a run only: checkpoints are not picked by it (see the worker)."""

    priority = 15  # before MetricsHook, which sends its values with the step's metrics

    def __init__(self, make_batches: Callable[[], Iterable], labels: np.ndarray, metrics: MetricsHook):
        self.make_batches = make_batches  # -> (inputs, None) batches of the val faces
        self.labels = labels
        self.metrics = metrics

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        preds = predict_batches(trainer.ema.module, trainer.algorithm, self.make_batches(), trainer.step)
        classifier = classification_report(self.labels, preds.semantic.argmax(1))
        fused = classification_report(self.labels, preds.fused.argmax(1))
        return {
            "val_accuracy": classifier["accuracy"],
            "val_balanced_accuracy": classifier["balanced_accuracy"],
            "val_fused_accuracy": fused["accuracy"],
            "val_fused_balanced_accuracy": fused["balanced_accuracy"],
        }

    def after_step(self, trainer: Trainer, result) -> None:
        cadence = trainer.cadence
        if len(self.labels) and (trainer.step % cadence.eval_every == 0 or trainer.step == cadence.steps):
            self.metrics.pending.update(self.evaluate(trainer))


class CheckpointHook(Hook):
    priority = 90

    def __init__(self, path: Path, extra: Callable[[], dict]):
        self.path = path
        self.extra = extra

    def save(self, trainer: Trainer) -> None:
        save_checkpoint(self.path, {**trainer.state_dict(), **self.extra()})

    def after_step(self, trainer: Trainer, result) -> None:
        if trainer.step % trainer.cadence.checkpoint_every == 0:
            self.save(trainer)

    def after_run(self, trainer: Trainer, status: str) -> None:
        self.save(trainer)


class StopHook(Hook):
    """Asks the loop to stop when `should_stop()` says so (a signal, the GUI's Cancel)."""

    priority = 0

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def after_step(self, trainer: Trainer, result) -> None:
        if any_rank(self.should_stop(), trainer.device):
            trainer.request_stop("cancelled")
