"""Soft labels (`train --soft-labels`): each labeled train face's target is its annotators' vote
shares (core/team/votes.py: an adjudicated face gets its adjudication, one-hot) instead of the
one class its label row says; a face without votes (an imported label) keeps the one-hot of its
label. The label row, the consensus, stays the class for everything that needs one.

A run's targets are frozen at its start, like its labeled set: in the transaction that records
`run_labels`, the targets that differ from the one-hot of the face's recorded label are written
to `checkpoints/run_N.soft_targets.json` (beside the run's checkpoint; pruning a superseded
refit deletes its checkpoint, not this record, as it keeps its labeled set). The run, and a
resume of it, read them from there, never today's votes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from core.classes import class_names
from core.store.project import Project
from core.team.votes import load_votes, vote_distributions
from core.training.data import FaceTable

TARGETS_VERSION = 1
NO_VOTES = "no votes: soft labels equal the hard labels"


def targets_path(project: Project, run_id: int) -> Path:
    return project.cache_dir("checkpoints") / f"run_{run_id}.soft_targets.json"


@dataclass(frozen=True)
class VoteTargets:
    """Soft targets of some labeled faces, one row per face in the order given."""

    targets: np.ndarray  # (faces, classes) float32, each row summing to 1
    voted: int  # faces with at least one vote
    split: np.ndarray  # bool per face: its target is not the one-hot of its label


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    targets = np.zeros((len(labels), classes), dtype=np.float32)
    targets[np.arange(len(labels)), labels] = 1.0
    return targets


def vote_targets(session: Session, face_ids: np.ndarray, labels: np.ndarray) -> VoteTargets:
    """The vote shares of these faces, whose labels (class indices, the consensus) are given;
    one-hot of the label for a face without votes."""
    targets = one_hot(np.asarray(labels, dtype=np.int64), len(class_names()))
    shares = vote_distributions(load_votes(session, [int(f) for f in face_ids]))
    voted = 0
    for row, face_id in enumerate(face_ids):
        share = shares.get(int(face_id))
        if share is not None:
            targets[row] = share
            voted += 1
    split = np.any(targets != one_hot(np.asarray(labels, dtype=np.int64), targets.shape[1]), axis=1)
    return VoteTargets(targets, voted, split)


def freeze_targets(project: Project, session: Session, run_id: int, face_ids: np.ndarray, labels: np.ndarray) -> None:
    """Record run `run_id`'s soft targets for its labeled set (face ids and their class indices),
    inside the transaction that records the set, so a failed write leaves no run behind."""
    found = vote_targets(session, face_ids, labels)
    record = {
        "version": TARGETS_VERSION,
        "run": run_id,
        "classes": list(class_names()),
        "labeled_faces": len(face_ids),
        "voted_faces": found.voted,
        # float32 values written as the doubles they are, so reading them back is exact.
        "targets": {
            str(int(face_ids[row])): [float(v) for v in found.targets[row]] for row in np.flatnonzero(found.split)
        },
    }
    path = targets_path(project, run_id)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record), encoding="utf-8")
    partial.replace(path)


@dataclass(frozen=True)
class FrozenTargets:
    """A run's soft targets as its trainer reads them."""

    targets: np.ndarray | None  # (faces of the table, classes); None: all one-hot, train on the labels
    message: str  # for the run's log


class SoftTargetsError(ValueError):
    pass


def load_frozen_targets(project: Project, run_id: int, faces: FaceTable, train_labels: np.ndarray) -> FrozenTargets:
    """Run `run_id`'s frozen targets over the rows of `faces` (`train_labels`: its recorded
    labels, -1 for the rest): one-hot of the label, or the recorded vote shares."""
    path = targets_path(project, run_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SoftTargetsError(
            f"run {run_id} trains with soft labels, but the targets frozen at its start ({path}) are missing; "
            f"start a new run"
        ) from None
    except (OSError, ValueError) as exc:
        raise SoftTargetsError(
            f"run {run_id}'s soft targets ({path}) cannot be read ({exc}); start a new run"
        ) from None
    if record.get("version") != TARGETS_VERSION or record.get("classes") != list(class_names()):
        raise SoftTargetsError(
            f"run {run_id}'s soft targets ({path}) were written for other classes or by another version; "
            f"start a new run"
        )
    voted, labeled, recorded = int(record["voted_faces"]), int(record["labeled_faces"]), record["targets"]
    if voted == 0:
        return FrozenTargets(None, NO_VOTES)
    if not recorded:
        return FrozenTargets(
            None, f"soft labels: the votes on all {voted:,} voted faces agree: they equal the hard labels"
        )
    labeled_rows = np.flatnonzero(train_labels >= 0)
    targets = np.zeros((len(faces), len(class_names())), dtype=np.float32)
    targets[labeled_rows] = one_hot(train_labels[labeled_rows], targets.shape[1])
    row_of = {int(faces.ids[row]): row for row in labeled_rows}
    for face_id, shares in recorded.items():
        row = row_of.get(int(face_id))
        if row is not None:  # a face left out since (deleted, unreadable) trains on nothing
            targets[row] = np.asarray(shares, dtype=np.float32)
    return FrozenTargets(
        targets,
        f"soft labels: {len(recorded):,} of {labeled:,} labeled faces train on split votes "
        f"(their vote shares); {voted:,} have votes",
    )
