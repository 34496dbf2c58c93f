"""A writer process killed in the middle of an import leaves a database that opens and holds
every committed row, and a re-run completes the import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import func, select

from core.ingest import importer
from core.ingest.importer import ImportOptions, import_source
from core.store.db import integrity_ok
from core.store.models import HiddenTruth, Image, ImportBatch, Label
from core.store.project import Project
from tests.imagegen import write_class_folders

REPO = Path(__file__).resolve().parent.parent

# Kills its own process with SIGKILL inside the third write transaction, after the rows were
# sent to SQLite but before COMMIT: the harshest moment to die.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from core.ingest import importer
    from core.ingest.importer import ImportOptions, import_source
    from core.store.project import Project

    importer.WRITE_BATCH = int(sys.argv[3])
    commits = 0

    @event.listens_for(Session, "before_commit")
    def die_in_third_batch(session):
        global commits
        commits += 1
        if commits == 4:  # 1: the import record, 2-3: two batches, 4: the third batch
            session.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    project = Project.open_or_create(sys.argv[1])
    import_source(project, sys.argv[2], ImportOptions(workers=1, keep_labels_per_class=4, seed=1))
""")


def test_killed_import_leaves_a_consistent_database(tmp_path):
    src = write_class_folders(tmp_path / "src", {"happy": 60, "sad": 60}, size=16)
    root = tmp_path / "proj"
    batch = 25
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(root), str(src), str(batch)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    project = Project.open(root)
    try:
        assert integrity_ok(project.engine)
        with project.session() as s:
            images = s.scalar(select(func.count()).select_from(Image))
            labeled = s.scalar(select(func.count()).select_from(Label))
            hidden = s.scalar(select(func.count()).select_from(HiddenTruth))
            unfinished = s.scalar(
                select(func.count()).select_from(ImportBatch).where(ImportBatch.finished_at.is_(None))
            )
            orphans = s.scalar(
                select(func.count())
                .select_from(Label)
                .outerjoin(Image, Image.id == Label.image_id)
                .where(Image.id.is_(None))
            )
        # Exactly the two committed batches survived, each whole: every labeled source face has
        # its label or its hidden truth, nothing half-written.
        assert images == 2 * batch
        assert labeled + hidden == images
        assert orphans == 0 and unfinished == 1

        # Running the import again completes it; what was there is skipped as already present.
        report = import_source(project, src, ImportOptions(workers=1))
        assert report.imported == 120 - 2 * batch
        assert sum("already in the project" in s.reason for s in report.skipped) == 2 * batch
        with project.session() as s:
            assert s.scalar(select(func.count()).select_from(Image)) == 120
    finally:
        project.close()
    assert importer.WRITE_BATCH == 500, "the subprocess's patch did not leak here"


def test_concurrent_reader_sees_committed_batches_while_importing(tmp_path):
    """WAL: another connection reads while the importer writes, without 'database is locked'."""
    src = write_class_folders(tmp_path / "src", {"happy": 40}, size=16)
    project = Project.create(tmp_path / "proj")
    reader = Project.open(project.root)
    seen = []

    def watch(event):
        with reader.session() as s:
            seen.append(s.scalar(select(func.count()).select_from(Image)))

    try:
        original = importer.WRITE_BATCH
        importer.WRITE_BATCH = 10
        import_source(project, src, ImportOptions(workers=1), progress=watch)
    finally:
        importer.WRITE_BATCH = original
        reader.close()
        project.close()
    assert seen[-4:] == [10, 20, 30, 40]
