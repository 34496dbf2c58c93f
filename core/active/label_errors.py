"""Suspected label errors: which labeled faces' current labels are likely wrong.

Confident learning (Northcutt, Jiang and Chuang, JAIR 2021, as the cleanlab package implements
it) judges a label by a model that never saw it: the labeled faces are cut into K stratified
folds (seeded), a classifier fitted on K-1 folds gives the K-th its class probabilities, so every
face has out-of-fold probabilities; `cleanlab.filter.find_label_issues` flags the faces whose
label those probabilities contradict (off-diagonal entries of the confident joint, pruned by the
estimated noise rate of each class pair), and `cleanlab.rank.get_label_quality_scores` gives each
label a quality score: the out-of-fold probability of the given label ("self-confidence").
A model that saw the label can learn it by heart, wrong or not: the studio's head trained on 100
faces per class of FER2013 with 10% planted wrong labels fits all of them, and its probability
of the given label finds 18% of the planted ones where out of fold finds 33% (with all 27,485
faces it fits only 60% of its labels and does as well: docs/benchmarks.md, "Suspected label
errors"). Out of fold, no model has seen the label it judges, whatever the model.

The classifier is a multinomial logistic regression on standardized features, the face as the
run's head reads it (view 0 of the cached encoder features, with the face geometry appended where
the run used it). Why: it is convex, so a fold's fit has one answer for a given seed and no
schedule to tune; it takes a fraction of a second at 100 faces per class and about 10 s on
FER2013's 27,485 train faces on one core, where K of the run's own heads would each cost a
training run; and an L2-regularised linear softmax on frozen features gives probabilities close
enough to calibrated for confident learning's per-class thresholds (its strength chosen on the
first fold by log loss: REGULARISATION_GRID).

The result is cached under the project's features/label-errors/, keyed by the run, the split and
a fingerprint of the labeled set (face ids with their current labels), so opening the queue again
reads a file, and a changed label computes it anew. Faces whose features are not cached are not
checked and are named as such (nothing here starts an encoder pass over images).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from core.active.data import QueueError
from core.classes import class_names
from core.store.models import Run
from core.store.project import Project

FOLDS = 5
MIN_PER_CLASS = FOLDS  # a class with fewer labeled faces cannot be in every fold's training part
# Inverse L2 strengths on standardized features tried on the first fold, the one whose held-out
# probabilities predict the given labels best (log loss) kept for every fold: the right strength
# depends on the features (FER2013's 1,313 numbers a face want 0.001, which also found the most
# planted errors there; well separated clusters want 0.1), and one fold's extra fits cost less
# than a nested search (docs/benchmarks.md, "Suspected label errors").
REGULARISATION_GRID = (0.001, 0.01, 0.1)
MAX_ITER = 100  # lbfgs iterations per fold: enough at FER2013's size (docs/benchmarks.md)
QUALITY_METHOD = "self_confidence"  # cleanlab's label quality: the out-of-fold p of the given label
CHECK_VERSION = 2  # bump when the check changes, so cached results are not reused
CACHE_FOLDER = "label-errors"


@dataclass(frozen=True)
class LabelCheck:
    """Out-of-fold evidence about n labels, in the order given."""

    labels: np.ndarray  # (n,) int64 class index of the given label
    probs: np.ndarray  # (n, classes) out-of-fold probabilities in class order (0 for a class nobody labeled)
    quality: np.ndarray  # (n,) cleanlab's label quality, 0-1: low = likely wrong
    flagged: np.ndarray  # (n,) bool: cleanlab's find_label_issues says the label is likely wrong
    regularisation: float  # the logistic regression's C the folds used

    def order(self) -> np.ndarray:
        """Indexes from the most to the least suspect: by ascending quality (equal qualities in
        the order given). Not flagged ones first: on FER2013 that found 0.4-1.2 points fewer
        planted errors in every condition (docs/benchmarks.md), so the flag is said, not ranked by."""
        return np.lexsort((np.arange(len(self.labels)), self.quality))


def too_few_labels(labels: np.ndarray, folds: int = FOLDS) -> str | None:
    """Why these labels (class indexes) cannot be checked out of fold, or None."""
    names = class_names()
    counts = np.bincount(labels, minlength=len(names))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        return f"checking labels needs labeled faces of at least two classes; there are {len(labels)} of {len(present)}"
    short = [f"{names[c]} has {counts[c]}" for c in present if counts[c] < max(folds, MIN_PER_CLASS)]
    if short:
        return (
            f"checking labels out of fold needs at least {max(folds, MIN_PER_CLASS)} labeled faces of every "
            f"labeled class ({folds} folds); {', '.join(short)}: label more faces of "
            f"{'that class' if len(short) == 1 else 'those classes'}"
        )
    return None


def out_of_fold_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    folds: int = FOLDS,
    seed: int = 0,
    regularisation: float | None = None,
) -> tuple[np.ndarray, float]:
    """(n, classes) probabilities of each face from a logistic regression fitted on the other
    folds (stratified, shuffled by `seed`; columns in class order, 0 for an unlabeled class), and
    the C used: `regularisation`, or None for the best of REGULARISATION_GRID on the first fold."""
    from sklearn.model_selection import StratifiedKFold

    problem = too_few_labels(labels, folds)
    if problem:
        raise ValueError(problem)
    probs = np.zeros((len(labels), len(class_names())), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in splitter.split(np.zeros(len(labels)), labels):
        # The first fold tries the grid; its choice is kept in `regularisation` for the others.
        tried = REGULARISATION_GRID if regularisation is None else (regularisation,)
        best = None
        for strength in tried:
            model = fit_classifier(features[fit_rows], labels[fit_rows], strength)
            held = np.zeros((len(held_rows), probs.shape[1]))
            held[:, model.classes_] = model.predict_proba(features[held_rows])
            loss = -np.log(np.maximum(held[np.arange(len(held_rows)), labels[held_rows]], 1e-9)).mean()
            if best is None or loss < best[0]:
                best = (loss, strength, held)
        assert best is not None
        _loss, regularisation, probs[held_rows] = best
    assert regularisation is not None
    return probs, regularisation


def fit_classifier(features: np.ndarray, labels: np.ndarray, regularisation: float):
    """The multinomial logistic regression on standardized features (see the module's words)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=MAX_ITER))
    with warnings.catch_warnings():
        # MAX_ITER is a time cap: at FER2013's size lbfgs stops a little short of its tolerance,
        # which the benchmark's precision and recall include.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.asarray(features, dtype=np.float32), labels)
    return model


def judge_labels(labels: np.ndarray, probs: np.ndarray, regularisation: float) -> LabelCheck:
    """cleanlab's flags and label quality from out-of-fold probabilities (columns in class
    order); classes nobody labeled are left out of its confident joint."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    present = np.flatnonzero(np.bincount(labels, minlength=probs.shape[1]))
    compact = np.searchsorted(present, labels)
    kept = probs[:, present]
    kept = kept / np.maximum(kept.sum(axis=1, keepdims=True), 1e-12)
    # n_jobs=1: cleanlab would otherwise start a process pool, from the studio's worker thread too.
    flagged = find_label_issues(compact, kept, n_jobs=1)
    quality = get_label_quality_scores(compact, kept, method=QUALITY_METHOD)
    return LabelCheck(
        labels.astype(np.int64), probs, np.asarray(quality, dtype=np.float64), np.asarray(flagged), regularisation
    )


def check_labels(
    features: np.ndarray,
    labels: np.ndarray,
    folds: int = FOLDS,
    seed: int = 0,
    regularisation: float | None = None,
) -> LabelCheck:
    """Out-of-fold probabilities of these labeled faces and cleanlab's verdict on each label
    (`regularisation` None: chosen on the first fold, see REGULARISATION_GRID)."""
    probs, chosen = out_of_fold_probabilities(features, labels, folds, seed, regularisation)
    return judge_labels(labels, probs, chosen)


def label_note(check: LabelCheck, i: int) -> str:
    """What the check says about label i, e.g. "labeled disgust (out-of-fold 0.04); out-of-fold
    0.81 anger; flagged as a likely wrong label"."""
    names = class_names()
    given, probs = int(check.labels[i]), check.probs[i]
    top = int(np.argmax(probs))
    parts = [f"labeled {names[given]} (out-of-fold {probs[given]:.2f})"]
    if top != given:
        parts.append(f"out-of-fold {probs[top]:.2f} {names[top]}")
    else:
        parts[0] = parts[0][:-1] + ", its most probable class)"
    parts.append("flagged as a likely wrong label" if check.flagged[i] else "not flagged")
    return "; ".join(parts)


@dataclass(frozen=True)
class SuspectedErrors:
    """A run's label check over the labeled faces of a split."""

    run_id: int
    split: str | None
    face_ids: np.ndarray  # the faces checked, in face id order
    check: LabelCheck  # parallel to face_ids
    unchecked: np.ndarray  # labeled faces whose features (or face mesh) are not cached
    from_cache: bool  # read back from features/label-errors/
    seconds: float

    def rows_of(self, face_ids: np.ndarray) -> np.ndarray:
        """Each face's index into face_ids, -1 where it was not checked."""
        at = np.searchsorted(self.face_ids, face_ids)
        at = np.minimum(at, max(len(self.face_ids) - 1, 0))
        hit = (self.face_ids[at] == face_ids) if len(self.face_ids) else np.zeros(len(face_ids), dtype=bool)
        return np.where(hit, at, -1)


def suspected_label_errors(
    project: Project, session: Session, run_id: int, split: str | None = "train", folds: int = FOLDS, seed: int = 0
) -> SuspectedErrors:
    """The current labels of the split's labeled faces (None: every split's) checked out of fold
    on run `run_id`'s features; read from the cache when the labeled set is unchanged. A QueueError
    says why it cannot be done (too few labels, features not cached, no such run)."""
    from core.training.data import load_face_table
    from core.training.settings import TrainSettings

    started = time.perf_counter()
    run = session.get(Run, run_id)
    if run is None:
        raise QueueError(f"there is no run {run_id} in this project")
    try:
        settings = TrainSettings.from_dict(run.config)
    except (TypeError, ValueError) as exc:
        raise QueueError(f"run {run_id}'s recorded settings cannot be read ({exc}); train a new run") from None
    faces = load_face_table(project, session)
    rows = faces.where(split=split, labeled=True)
    ids, labels = faces.ids[rows], faces.labels[rows]
    where = f"the {split} split" if split else "this project"
    problem = too_few_labels(labels, folds)
    if problem:
        raise QueueError(f"{where} has {len(rows)} labeled faces: {problem}")
    digest = _fingerprint(run_id, split, folds, seed, ids, labels)
    path = project.cache_dir("features") / CACHE_FOLDER / f"run_{run_id}-{split or 'all'}-{digest[:20]}.npz"
    cached = _read_cached(path, run_id, split, digest, started)
    if cached is not None:
        return cached

    from core.encoders import EncoderError, get_encoder  # deferred: torch is loaded only to compute
    from core.training.geometry import cached_head_inputs

    try:
        encoder = get_encoder(settings.encoder, device="cpu")
    except EncoderError as exc:
        raise QueueError(f"run {run_id}'s encoder cannot be loaded to read its cached features: {exc}") from None
    features, found = cached_head_inputs(project, encoder, faces, settings.strong_views, settings.uses_geometry, rows)
    if not found.any():
        raise QueueError(
            f"none of the {len(rows)} labeled faces of {where} has cached features for run {run_id} "
            f"({settings.encoder} encoder{', face geometry' if settings.uses_geometry else ''}): compute them "
            f"with `python main.py features {project.root}`"
        )
    problem = too_few_labels(labels[found], folds)
    if problem:
        raise QueueError(
            f"{int(found.sum())} of the {len(rows)} labeled faces of {where} have cached features: {problem} "
            f"(or compute the others' features: `python main.py features {project.root}`)"
        )
    check = check_labels(features[found], labels[found], folds, seed)
    result = SuspectedErrors(run_id, split, ids[found], check, ids[~found], False, time.perf_counter() - started)
    if not len(result.unchecked):  # a result missing faces is not kept: computing their features changes it
        _write_cached(project, path, result, digest)
    return result


def _fingerprint(run_id: int, split: str | None, folds: int, seed: int, ids: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256(f"v{CHECK_VERSION}|run {run_id}|{split}|{folds} folds|seed {seed}|".encode())
    digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _read_cached(path: Path, run_id: int, split: str | None, digest: str, started: float) -> SuspectedErrors | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if str(data["fingerprint"]) != digest:
                return None
            check = LabelCheck(
                data["labels"], data["probs"], data["quality"], data["flagged"], float(data["regularisation"])
            )
            ids = data["face_ids"]
    except Exception:  # noqa: BLE001 - whatever is wrong with the file, the check is recomputed
        return None
    return SuspectedErrors(run_id, split, ids, check, np.zeros(0, np.int64), True, time.perf_counter() - started)


def _write_cached(project: Project, path: Path, result: SuspectedErrors, digest: str) -> None:
    """Keep the result (one file per run and split: older labeled sets' files go); a project
    opened read-only, or a folder that cannot be written, just computes it next time too."""
    if project.read_only:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        check = result.check
        np.savez(
            tmp,
            fingerprint=np.array(digest),
            face_ids=result.face_ids,
            labels=check.labels,
            probs=check.probs.astype(np.float32),
            quality=check.quality,
            flagged=check.flagged,
            regularisation=np.array(check.regularisation),
        )
        os.replace(tmp, path)
        stem = path.name.rsplit("-", 1)[0]
        for old in path.parent.glob(f"{stem}-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        return
