"""Bounded growth: a day of annotation makes hundreds of refits, each with a prediction, an
embedding and two map rows per face and a checkpoint. Once a refit is superseded, those go.

Kept for every run: the run row (settings, parent, times), its labeled set (`run_labels`) and
its metrics, which is what provenance and `runs` need. Kept whole: every run a user trained,
the newest `keep_latest` finished refits, and the runs named in `protect` (the refit just made
and its parent). A pruned run says so (`runs.predictions_pruned_at`), so `evaluate`, the queue
and a refit asked for it answer with that instead of empty results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from core.store.models import (
    RUN_FINISHED,
    RUN_KIND_REFIT,
    RUN_QUEUED,
    RUN_RUNNING,
    Embedding,
    Prediction,
    Projection,
    Run,
    utcnow,
)
from core.store.project import Project

KEEP_REFITS = 5  # finished refits kept whole: the studio's current one and a few to compare


@dataclass
class Pruned:
    runs: list[int] = field(default_factory=list)
    rows: int = 0  # prediction, embedding and map rows deleted
    checkpoints: int = 0

    def describe(self) -> str:
        if not self.runs:
            return "nothing pruned"
        ids = ", ".join(str(r) for r in self.runs)
        return (
            f"pruned the per-face results of superseded refit{'s' if len(self.runs) > 1 else ''} {ids} "
            f"({self.rows} rows, {self.checkpoints} checkpoint{'s' if self.checkpoints != 1 else ''}; "
            f"their labeled sets and metrics are kept)"
        )

    def as_dict(self) -> dict:
        return {"runs": self.runs, "rows": self.rows, "checkpoints": self.checkpoints}


def prunable_refits(session, keep_latest: int, protect: set[int]) -> list[Run]:
    """Refits whose per-face results can go: not running, not yet pruned, not among the newest
    `keep_latest` finished ones, not protected and not the parent of a running run."""
    refits = session.scalars(
        select(Run).where(Run.kind == RUN_KIND_REFIT, Run.predictions_pruned_at.is_(None)).order_by(Run.id.desc())
    ).all()
    busy = set(session.scalars(select(Run.parent_run_id).where(Run.status.in_((RUN_RUNNING, RUN_QUEUED)))))
    newest = [r.id for r in refits if r.status == RUN_FINISHED][:keep_latest]
    keep = set(newest) | set(protect) | busy
    return [r for r in refits if r.id not in keep and r.status not in (RUN_RUNNING, RUN_QUEUED)]


def prune_refits(
    project: Project, keep_latest: int = KEEP_REFITS, protect: set[int] | frozenset = frozenset()
) -> Pruned:
    """Delete the predictions, embeddings, maps and checkpoints of superseded refits."""
    if keep_latest < 1:
        raise ValueError(f"keep_latest must be at least 1 (the newest refit is the studio's), not {keep_latest}")
    pruned = Pruned()
    checkpoints: list[Path] = []
    with project.session() as session:
        runs = prunable_refits(session, keep_latest, set(protect))
        ids = [r.id for r in runs]
        if not ids:
            return pruned
        for table in (Prediction, Embedding, Projection):
            # A DELETE's result is a CursorResult (which has rowcount); Session.execute is typed for any statement.
            deleted = cast("CursorResult[Any]", session.execute(delete(table).where(table.run_id.in_(ids))))
            pruned.rows += deleted.rowcount or 0
        now = utcnow()
        for run in runs:
            if run.checkpoint:
                checkpoints.append(project.resolve_path(run.checkpoint))
            run.checkpoint = None
            run.predictions_pruned_at = now
        pruned.runs = sorted(ids)
    # Files go once the rows say they are gone: a crash in between leaves a stray file, never a
    # run pointing at a missing checkpoint.
    for path in checkpoints:
        try:
            path.unlink()
            pruned.checkpoints += 1
        except FileNotFoundError:
            pass
    return pruned
