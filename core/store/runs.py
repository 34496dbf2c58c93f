"""Run bookkeeping that every process needs: marking runs whose worker died, saying a run was pruned."""

from __future__ import annotations

import os
import socket

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.models import RUN_CANCELLED, RUN_FAILED, RUN_KIND_REFIT, RUN_QUEUED, RUN_RUNNING, Run, utcnow


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def reap_dead_runs(session: Session) -> list[int]:
    """Mark failed every running run of this host whose worker process is gone."""
    host = socket.gethostname()
    reaped = []
    for run in session.scalars(select(Run).where(Run.status.in_((RUN_RUNNING, RUN_QUEUED)))):
        if run.host == host and run.pid and not process_alive(run.pid):
            run.status = RUN_FAILED
            run.finished_at = utcnow()
            hint = (
                f"refit run {run.parent_run_id} again (a refit is not resumed)"
                if run.kind == RUN_KIND_REFIT
                else f"resume it with: python main.py train PROJECT --resume {run.id}"
            )
            run.error = f"the worker process (pid {run.pid}) ended without finishing; {hint}"
            reaped.append(run.id)
    return reaped


def settle_cancelled_run(session: Session, run_id: int) -> bool:
    """A run whose cancel was asked for and whose worker was then killed before it could say
    so (it did not stop in time) is cancelled, not failed: the user stopped it, and it resumes
    from its last periodic checkpoint. Does nothing while the worker still lives."""
    run = session.get(Run, run_id)
    if run is None or run.status not in (RUN_RUNNING, RUN_QUEUED):
        return False
    if run.pid and run.host == socket.gethostname() and process_alive(run.pid):
        return False
    run.status = RUN_CANCELLED
    run.finished_at = utcnow()
    run.error = (
        f"stopped by force after it did not stop in time; resume it from its last checkpoint with: "
        f"python main.py train PROJECT --resume {run.id}"
    )
    return True


def pruned_run_message(run: Run) -> str:
    """What to say when a pruned refit's per-face results are asked for (core/training/pruning.py)."""
    when = run.predictions_pruned_at.strftime("%Y-%m-%d %H:%M UTC") if run.predictions_pruned_at else "earlier"
    return (
        f"run {run.id} is a superseded refit: its per-face predictions were pruned ({when}) to keep the "
        f"project small; its labeled set and metrics are kept. Use a newer run (`runs` lists them)"
    )
