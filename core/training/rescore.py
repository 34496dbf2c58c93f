"""Re-scoring a finished run's text level with new class descriptions, without retraining.

The text level is p_text = softmax(q . t_c / tau), where q is the head's projection of a face's
frozen encoder feature and t_c the descriptions' embeddings. In head mode q depends only on the
run's checkpoint (the EMA weights, which wrote the predictions) and the cached features, so new
descriptions give a new p_text for every face in seconds: encode them with the run's text
encoder, project the cached view-0 features through the EMA head, re-fuse with the run's
fusion weights (the semantic and instance levels stay as stored), and rewrite p_text, p_fused,
the pseudo-label, confidence and passed-threshold of the run's predictions in one transaction.
Re-scoring with the descriptions the run was trained with gives back its own predictions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sqlalchemy import Text, cast, select, update

from core.active.data import load_thresholds
from core.classes import class_names
from core.store.models import RUN_FINISHED, Prediction, Run
from core.store.prediction_rows import decode_probability_column, encode_prediction
from core.store.project import Project
from core.training.checkpoints import CheckpointError, load_checkpoint
from core.training.data import load_face_table
from core.training.settings import TrainSettings

CHUNK = 4096  # faces per pass: bounds the memory of cached features (views x dim float16 each)

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


class RescoreError(ValueError):
    """A run whose text level cannot be re-scored; the message says why and what to do."""


@dataclass(frozen=True)
class RescoreResult:
    run_id: int
    faces: int  # predictions rewritten
    pseudo_labels_changed: int  # faces whose fused pseudo-label is now another class
    seconds: float


def rescore_text_level(
    project: Project,
    run_id: int,
    descriptions: dict[str, list[str]],
    progress: Progress | None = None,
    device: str = "cpu",
) -> RescoreResult:
    """Recompute run `run_id`'s text level with `descriptions` ({class: [texts]}) and re-fuse.
    Raises RescoreError for a run that cannot be re-scored (not finished, fine-tune mode, no
    text level, no checkpoint), before anything is written."""
    from core.encoders import get_encoder  # deferred: loading encoders is heavy
    from core.encoders.text import check_descriptions, class_text_embeddings
    from core.ssl.fusion import LevelProbs, fuse
    from core.ssl.levels import text_probs
    from core.training.geometry import head_input_dim, input_width_problem, load_head_inputs
    from core.training.head import build_method

    started = time.perf_counter()
    report = progress or (lambda _message, _fraction: None)
    descriptions = check_descriptions(descriptions, "the descriptions")
    with project.session() as session:
        run = session.get(Run, run_id)
        settings, checkpoint = _check_run(project, run, run_id)
        thresholds = load_thresholds(session, run_id)
        stored = _stored_levels(session, run_id)
        faces = load_face_table(project, session)

    try:
        state = load_checkpoint(checkpoint, map_location=device)
    except CheckpointError as exc:
        raise RescoreError(f"run {run_id} cannot be re-scored: {exc}") from None
    report("loading the text encoder", 0.0)
    encoder = get_encoder(settings.encoder, device=device)
    class_text = class_text_embeddings(encoder, descriptions, project.cache_dir("features"))
    # The memory bank is not used here (the instance level is kept as stored): one slot will do.
    algorithm, head = build_method(
        settings, head_input_dim(encoder.image_dim, settings.uses_geometry), class_text, 1, torch.device(device)
    )
    if "text" not in algorithm.levels:
        raise RescoreError(
            f"run {run_id} ({settings.algorithm}) was trained without the text level: "
            f"there is nothing to re-score (train with --algorithm sitfer)"
        )
    problem = input_width_problem(state["ema"], head.input_norm.normalized_shape[0])
    if problem:
        raise RescoreError(f"run {run_id} cannot be re-scored: {problem}")
    head.load_state_dict(state["ema"])
    head.to(device).eval()
    if thresholds is None:  # the run logged none: the thresholds it ended with
        algorithm.threshold.load_state_dict(state["algorithm"]["threshold"])
        thresholds = algorithm.thresholds().cpu().numpy()

    row_of = {int(face_id): row for row, face_id in enumerate(faces.ids)}
    ids = np.array([f for f in stored.face_ids if f in row_of], dtype=np.int64)  # active faces only
    if not len(ids):
        raise RescoreError(f"run {run_id} has no predictions for this project's active faces")
    config = settings.method
    names = class_names()
    updates, changed = [], 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        report(f"re-scoring faces {start + 1:,}-{start + len(chunk):,} of {len(ids):,}", start / len(ids))
        rows = np.array([row_of[int(f)] for f in chunk], dtype=np.int64)
        inputs = load_head_inputs(project, encoder, faces, settings.strong_views, settings.uses_geometry, rows)
        features, broken = inputs.features, inputs.broken
        if broken:
            raise RescoreError(
                f"{len(broken)} face(s) of run {run_id} could not be read for their features "
                f"(e.g. face {int(chunk[broken[0]])}); nothing was changed"
            )
        with torch.no_grad():
            projected = head(torch.from_numpy(features[:, 0]).float().to(device)).projected
            text = text_probs(projected, class_text.to(device), config.text_tau).cpu().double()
        picked = stored.rows_of(chunk)
        fused = _fuse_rows(fuse, stored, picked, text, config)
        pseudo = fused.argmax(1)
        confidence = fused.max(1)
        changed += int((pseudo != stored.predicted[picked]).sum())
        # Outputs the algorithm derives from the fused prediction (LEAF's positive set) follow it.
        extras = {
            name: value.cpu().numpy()
            for name, value in algorithm.face_extras(LevelProbs(None, None, None, torch.from_numpy(fused))).items()
        }
        text_values = text.numpy()
        for i, face_id in enumerate(chunk):
            # An update of the columns the new text level changes; the semantic and instance levels stay.
            updates.append(
                encode_prediction(
                    run_id,
                    face_id,
                    fused=fused[i],
                    pseudo_label=pseudo[i],
                    confidence=confidence[i],
                    passed=confidence[i] >= thresholds[pseudo[i]],
                    names=names,
                    levels={"text": text_values[i]},
                    extras={key: values[i] for key, values in extras.items()} if extras else None,
                )
            )
    report("writing the new predictions", 0.98)
    with project.session() as session:  # one transaction: every face re-scored, or none
        session.execute(update(Prediction), updates)
    report("done", 1.0)
    return RescoreResult(run_id, len(updates), changed, time.perf_counter() - started)


def _check_run(project: Project, run: Run | None, run_id: int) -> tuple[TrainSettings, str]:
    if run is None:
        raise RescoreError(f"there is no run {run_id} in this project")
    if run.status != RUN_FINISHED:
        raise RescoreError(f"run {run_id} is {run.status}; only a finished run's predictions can be re-scored")
    if run.mode != "head":
        mode = "fine-tune" if run.mode == "finetune" else run.mode
        raise RescoreError(
            f"run {run_id} was trained in {mode} mode: its image encoder changed during "
            f"training and no features of that encoder are cached, so its text level cannot "
            f"be re-scored cheaply; train a head-mode run with the new descriptions instead"
        )
    settings = TrainSettings.from_dict(run.config)
    checkpoint = project.resolve_path(run.checkpoint) if run.checkpoint else None
    if checkpoint is None or not checkpoint.is_file():
        raise RescoreError(
            f"run {run_id} has no checkpoint file"
            + (f" (expected {checkpoint})" if checkpoint else "")
            + "; it cannot be re-scored"
        )
    return settings, str(checkpoint)


@dataclass
class _StoredLevels:
    """The run's stored semantic and instance levels (NaN rows where a face lacks one)."""

    face_ids: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    predicted: np.ndarray  # class index of the stored pseudo-label

    def rows_of(self, face_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.face_ids, face_ids)


def _stored_levels(session, run_id: int) -> _StoredLevels:
    index = {name: i for i, name in enumerate(class_names())}
    width = len(index)
    rows = session.execute(
        select(
            Prediction.image_id,
            cast(Prediction.p_semantic, Text),
            cast(Prediction.p_instance, Text),
            Prediction.pseudo_label,
        )
        .where(Prediction.run_id == run_id)
        .order_by(Prediction.image_id)
    ).all()

    return _StoredLevels(
        face_ids=np.array([r[0] for r in rows], dtype=np.int64),
        semantic=decode_probability_column([r[1] for r in rows], width),
        instance=decode_probability_column([r[2] for r in rows], width),
        predicted=np.array([index[r[3]] for r in rows], dtype=np.int64),
    )


def _fuse_rows(fuse, stored: _StoredLevels, rows: np.ndarray, text: torch.Tensor, config) -> np.ndarray:
    """Fused probabilities as the run's algorithm fuses them, for faces with and without a
    stored instance level alike (before the warm-up a run wrote none)."""
    semantic = torch.from_numpy(stored.semantic[rows])
    instance = torch.from_numpy(stored.instance[rows])
    has_instance = ~torch.isnan(instance).any(1)
    has_semantic = ~torch.isnan(semantic).any(1)
    fused = torch.empty_like(text)
    for group in (has_instance, ~has_instance):
        if not group.any():
            continue
        use_semantic = config.use_semantic and bool(has_semantic[group].all())
        fused[group] = fuse(
            semantic[group] if use_semantic else None,
            text[group],
            instance[group] if bool(has_instance[group].all()) else None,
            config.weights,
        )
    return fused.numpy()
