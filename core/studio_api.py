"""What the studio's views read from a project and how they change it, without Qt: one door,
grouped by what the views need, so no widget opens a database session (tests/test_layering.py
checks that app/ never does).

- `faces`: counts, face lists and rows by id, current labels (the grids, the map's colours);
- `runs`: the run history, a run's curves and map, which run to show, resuming, cleaning up;
- `evidence`: one face's evidence and nearest labeled faces (the detail panel), the review queue;
- `team`: the annotators' agreement and each face's vote entropy, the team's overlap setting,
  and what the other annotators changed since the studio last looked (core/team);
- `labeling`: label changes, undo and redo through core.labeling. Each returns a `Change`: the
  faces it changed and whether the annotator can undo or redo now, so the studio's Undo/Redo
  actions enable themselves from what the log says rather than from guesses.

Every call opens and closes its own session: views may call from a worker thread
(app/background.py) as well as from the GUI thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from core import labeling
from core.active import QueueFilters, QueueItem, build_queue
from core.active.data import load_thresholds
from core.active.evidence import FaceEvidence, LabeledNeighbours, Neighbour, face_evidence
from core.face_points import FacePointReader, FacePoints
from core.labeling import LabelStep, SelectionSummary, Suggestion, UndoState
from core.run_data import (
    RunMap,
    RunSummary,
    current_labels,
    latest_run_with_map,
    load_run_map,
    metric_series,
    prediction_count,
    run_summaries,
)
from core.store.models import RUN_CANCELLED, RUN_FAILED, Correction, Run
from core.store.project import Project
from core.store.queries import FaceRow, labeled_today, latest_finished_run_id, list_faces, project_stats
from core.store.runs import reap_dead_runs, settle_cancelled_run
from core.team.activity import TeamActivity, TeamWatch, team_activity
from core.team.agreement import AgreementReport
from core.team.assignment import TeamSettings, read_settings, still_to_vote
from core.team.project_agreement import ALL_SPLITS, project_agreement, project_vote_entropy

IDS_PER_QUERY = 900  # faces per query by id (one SQL parameter each; SQLite allows 999)


@dataclass(frozen=True)
class Change:
    """What one change did, for the views: which faces' labels changed, and whether the annotator
    can undo or redo now. A refit changes no label but the run the views show (`run_id`)."""

    kind: str  # "label", "undo", "redo", "refit", or "none" (nothing changed)
    face_ids: tuple[int, ...]
    can_undo: bool
    can_redo: bool
    step: LabelStep | None = None  # the labeling step (its description and left-out faces)
    run_id: int | None = None  # a refit's new run
    adjudicated: bool = False  # the step is (or undid, or redid) an adjudicator's final word

    @property
    def touched(self) -> tuple[int, ...]:
        """Faces the views should re-read: those whose votes changed (their label may stand)."""
        return self.face_ids


@dataclass(frozen=True)
class TrainCounts:
    """Train faces with and without a label: what the automatic step count is chosen from."""

    labeled: int
    unlabeled: int


@dataclass(frozen=True)
class FaceView:
    """One face as the detail panel shows it: its evidence (None: the face has left the project)
    and its nearest labeled faces (None: no index for the run yet)."""

    evidence: FaceEvidence | None
    neighbours: list[Neighbour] | None


class FaceQueries:
    def __init__(self, project: Project):
        self.project = project

    def stats(self) -> dict:
        with self.project.session() as session:
            return project_stats(session)

    def labeled_today(self) -> int:
        """Faces annotators gave a label (first or another) since local midnight."""
        with self.project.session() as session:
            return labeled_today(session)

    def train_counts(self) -> TrainCounts:
        train = self.stats()["by_split"].get("train", {})
        return TrainCounts(int(train.get("labeled", 0)), int(train.get("unlabeled", 0)))

    def list(self, split: str | None = None, labeled: bool | None = None, label: str | None = None) -> list[FaceRow]:
        with self.project.session() as session:
            return list_faces(session, split=split, labeled=labeled, label=label)

    def by_ids(self, face_ids: Iterable[int]) -> dict[int, FaceRow]:
        ids = list(dict.fromkeys(int(f) for f in face_ids))
        found: dict[int, FaceRow] = {}
        with self.project.session() as session:
            for start in range(0, len(ids), IDS_PER_QUERY):
                found.update((face.id, face) for face in list_faces(session, ids=ids[start : start + IDS_PER_QUERY]))
        return found

    def labels_of(self, face_ids) -> np.ndarray:
        """Current class index of each face (-1: unlabeled), in the order given."""
        with self.project.session() as session:
            return current_labels(session, face_ids)


class RunQueries:
    def __init__(self, project: Project):
        self.project = project

    def summaries(self) -> list[RunSummary]:
        with self.project.session() as session:
            return run_summaries(session)

    def to_show(self) -> int | None:
        """The run the views show when a project opens: the newest finished run with a map."""
        with self.project.session() as session:
            return latest_run_with_map(session)

    def has_finished_run(self) -> bool:
        with self.project.session() as session:
            return latest_finished_run_id(session) is not None

    def metrics(self, run_id: int) -> dict:
        with self.project.session() as session:
            return metric_series(session, run_id)

    def map(self, run_id: int, method: str | None = None) -> RunMap | None:
        with self.project.session() as session:
            return load_run_map(session, run_id, method)

    def size(self, run_id: int) -> int:
        """How many faces the run predicted."""
        with self.project.session() as session:
            return prediction_count(session, run_id)

    def resumable(self, run_id: int) -> bool:
        """A cancelled or failed run whose checkpoint is still there: `train --resume` continues it."""
        with self.project.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.status not in (RUN_CANCELLED, RUN_FAILED) or not run.checkpoint:
                return False
            checkpoint = run.checkpoint
        return self.project.resolve_path(checkpoint).is_file()

    def reap_dead(self) -> None:
        """Mark failed the runs whose worker died without saying so."""
        with self.project.session() as session:
            reap_dead_runs(session)

    def settle_cancelled(self, run_id: int) -> None:
        """A worker killed while cancelling: its run is cancelled, not failed."""
        with self.project.session() as session:
            settle_cancelled_run(session, run_id)

    def refit_change(self, run_id: int, annotator: str | None) -> Change:
        """A refit finished: no label changed, the run to show did; undo/redo as they stand."""
        state = labeling.undo_state(self.project, annotator)
        return Change("refit", (), state.can_undo, state.can_redo, run_id=run_id)


class EvidenceQueries:
    def __init__(self, project: Project):
        self.project = project
        self._points: FacePointReader | None = None

    def face_points(self, face_id: int) -> FacePoints | None:
        """The detector's key points and the cached face mesh of a face, in its image's pixels."""
        if self._points is None:
            self._points = FacePointReader(self.project)
        return self._points.points(face_id)

    def thresholds(self, run_id: int) -> np.ndarray | None:
        with self.project.session() as session:
            return load_thresholds(session, run_id)

    def face(
        self,
        run_id: int | None,
        face_id: int,
        thresholds: np.ndarray | None = None,
        neighbours: LabeledNeighbours | None = None,
        k: int = 6,
    ) -> FaceView:
        """The face's evidence in the run and, given the run's index, its k nearest labeled faces:
        one session, two small queries."""
        with self.project.session() as session:
            evidence = face_evidence(session, run_id, face_id, thresholds)
            near = neighbours.nearest(session, face_id, k) if neighbours is not None else None
        return FaceView(evidence, near)

    def neighbour_index(self, run_id: int, split: str | None = "train") -> LabeledNeighbours:
        """The run's labeled faces' embeddings, ready for `face` (seconds on a big run: call it
        from a worker thread)."""
        index = LabeledNeighbours(run_id, split=split)
        with self.project.session() as session:
            index.refresh_labels(session)
        return index

    def queue(
        self, run_id: int, strategy: str, limit: int, split: str | None, filters: QueueFilters
    ) -> list[QueueItem]:
        return build_queue(self.project, run_id, strategy, limit, split, filters)


class LabelingActions:
    """core.labeling for one project; every change comes back as a `Change`."""

    def __init__(self, project: Project):
        self.project = project

    def set_label(
        self,
        face_id: int,
        label: str,
        annotator: str,
        *,
        suggestion: str | None = None,
        run_id: int | None = None,
        adjudicate: bool = False,
    ) -> Change:
        """The annotator's vote for the face; `adjudicate`: their final word over the votes."""
        return self._done(
            labeling.set_label(
                self.project, face_id, label, annotator, suggestion=suggestion, run_id=run_id, adjudicate=adjudicate
            ),
            annotator,
        )

    def bulk_label(
        self,
        face_ids: Sequence[int],
        label: str,
        annotator: str,
        *,
        run_id: int | None = None,
        include_labeled: bool = False,
        include_val_test: bool = False,
    ) -> Change:
        return self._done(
            labeling.bulk_label(
                self.project,
                face_ids,
                label,
                annotator,
                run_id=run_id,
                include_labeled=include_labeled,
                include_val_test=include_val_test,
            ),
            annotator,
        )

    def accept_suggestion(self, face_id: int, annotator: str, run_id: int | None = None) -> Change:
        return self._done(labeling.accept_suggestion(self.project, face_id, annotator, run_id), annotator)

    def accept_suggestions(
        self,
        face_ids: Sequence[int],
        annotator: str,
        run_id: int | None = None,
        *,
        include_labeled: bool = False,
        include_val_test: bool = False,
    ) -> Change:
        return self._done(
            labeling.accept_suggestions(
                self.project,
                face_ids,
                annotator,
                run_id,
                include_labeled=include_labeled,
                include_val_test=include_val_test,
            ),
            annotator,
        )

    def clear_label(self, face_id: int, annotator: str) -> Change:
        return self._done(labeling.clear_label(self.project, face_id, annotator), annotator)

    def clear_labels(self, face_ids: Sequence[int], annotator: str, *, include_val_test: bool = False) -> Change:
        return self._done(
            labeling.clear_labels(self.project, face_ids, annotator, include_val_test=include_val_test), annotator
        )

    def undo(self, annotator: str) -> Change:
        return self._done(labeling.undo(self.project, annotator), annotator)

    def redo(self, annotator: str) -> Change:
        return self._done(labeling.redo(self.project, annotator), annotator)

    def undo_state(self, annotator: str) -> UndoState:
        return labeling.undo_state(self.project, annotator)

    def selection_summary(self, face_ids: Sequence[int]) -> SelectionSummary:
        return labeling.selection_summary(self.project, face_ids)

    def suggestion_for(self, face_id: int, run_id: int | None = None) -> Suggestion | None:
        return labeling.suggestion_for(self.project, face_id, run_id)

    def _done(self, step: LabelStep | None, annotator: str) -> Change:
        state = labeling.undo_state(self.project, annotator)
        if step is None:
            return Change("none", (), state.can_undo, state.can_redo)
        kind = step.action if step.face_ids else "none"
        return Change(
            kind, tuple(step.face_ids), state.can_undo, state.can_redo, step=step, adjudicated=self._adjudicated(step)
        )

    def _adjudicated(self, step: LabelStep) -> bool:
        """Whether the step's correction is an adjudication (one is always a single-face step)."""
        if len(step.correction_ids) != 1:
            return False
        with self.project.session() as session:
            row = session.get(Correction, step.correction_ids[0])
            return bool(row is not None and row.adjudicated)


class TeamQueries:
    """How far the annotators' votes agree (core/team): the agreement panel and the map."""

    def __init__(self, project: Project):
        self.project = project

    def agreement(self, split: str = ALL_SPLITS, *, count_adjudicated: bool = False) -> AgreementReport:
        with self.project.session() as session:
            return project_agreement(session, split=split, count_adjudicated=count_adjudicated)

    def vote_entropy(self) -> dict[int, float]:
        """Each face with votes from two or more annotators: its vote entropy in bits."""
        with self.project.session() as session:
            return project_vote_entropy(session)

    def settings(self) -> TeamSettings:
        """The team's overlap setting (`main.py team --overlap`): a share above 0 makes it a team project."""
        with self.project.session() as session:
            return read_settings(session)

    def still_to_vote(self, face_ids: Iterable[int], annotator: str) -> set[int]:
        """Of these faces, those `annotator` is still asked to vote on (a teammate may have
        settled the others since the queue was built)."""
        with self.project.session() as session:
            return still_to_vote(session, annotator, face_ids)

    def activity(self, watch: TeamWatch | None, annotator: str) -> TeamActivity:
        """What annotators other than `annotator` logged, undid or redid since `watch` (None: the
        first look, which takes stock): two range queries on the log's key (core/team/activity.py)."""
        with self.project.session() as session:
            return team_activity(session, watch, annotator)


class StudioApi:
    """The groups for one open project."""

    def __init__(self, project: Project):
        self.project = project
        self.faces = FaceQueries(project)
        self.runs = RunQueries(project)
        self.evidence = EvidenceQueries(project)
        self.labeling = LabelingActions(project)
        self.team = TeamQueries(project)
