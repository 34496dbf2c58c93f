"""The demo project: procedurally drawn faces (see demo_faces.py) imported like any user data.

Its train split keeps a few labels per class and hides the rest as ground truth, exactly the
semi-supervised protocol, so every feature of the studio has something to show on first start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from core.ingest.demo_faces import write_demo_folders
from core.ingest.importer import ImportOptions, ImportProgress, ImportReport, import_source
from core.store.models import Image
from core.store.project import Project, ProjectError

DEMO_IMAGES_DIR = "demo_images"


@dataclass(frozen=True)
class DemoSettings:
    seed: int = 0
    train_per_class: int = 100
    val_per_class: int = 30
    labeled_per_class: int = 10
    size: int = 64


def create_demo_project(
    root: str | os.PathLike,
    settings: DemoSettings = DemoSettings(),
    progress: Callable[[ImportProgress], None] | None = None,
) -> tuple[Project, list[ImportReport]]:
    """Create (or fill an empty) project at `root` with the demo set. Refuses a project with faces."""
    project = Project.open_or_create(root)
    try:
        with project.session() as session:
            existing = session.scalar(select(func.count()).select_from(Image))
        if existing:
            raise ProjectError(
                f"{project.root} already holds {existing} faces; the demo set goes into a new or empty project"
            )
        folders = write_demo_folders(
            project.root / DEMO_IMAGES_DIR,
            seed=settings.seed,
            train_per_class=settings.train_per_class,
            val_per_class=settings.val_per_class,
            size=settings.size,
        )
        reports = [
            import_source(
                project,
                folders["train"],
                ImportOptions(
                    split="train", faces="none", keep_labels_per_class=settings.labeled_per_class, seed=settings.seed
                ),
                progress=progress,
            ),
            import_source(project, folders["val"], ImportOptions(split="val", faces="none"), progress=progress),
        ]
    except BaseException:
        project.close()
        raise
    return project, reports


def ensure_demo_project(
    root: str | os.PathLike,
    settings: DemoSettings = DemoSettings(),
    progress: Callable[[ImportProgress], None] | None = None,
) -> Project:
    """Open the demo project at `root`, building it first if it is not there yet."""
    if Project.is_project(root):
        project = Project.open(root)
        with project.session() as session:
            if session.scalar(select(func.count()).select_from(Image)):
                return project
        project.close()
    project, _reports = create_demo_project(Path(root), settings, progress)
    return project
