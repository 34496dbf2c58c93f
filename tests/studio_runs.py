"""Helpers shared by the studio's training and map tests: a small demo project, with or without a
finished run of the tiny encoder (trained in-process, a few seconds)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from core.ingest.demo import DemoSettings, create_demo_project
from core.ssl.config import MethodConfig
from core.training.events import JsonEvents
from core.training.loop import LoopConfig
from core.training.settings import TrainSettings
from core.training.worker import train

SMALL_DEMO = DemoSettings(train_per_class=8, val_per_class=3, labeled_per_class=2)
FACES = 7 * (8 + 3)


def quick_settings(algorithm: str = "sitfer", steps: int = 30) -> TrainSettings:
    # The instance warm-up outlasts these short runs (tests show the instance level as absent).
    return TrainSettings(
        algorithm=algorithm,
        encoder="tiny",
        projection="pca",
        strong_views=1,
        method=MethodConfig(instance_warmup=300),
        loop=LoopConfig(steps=steps, batch_size=16, log_every=5, eval_every=10),
    )


def make_demo(root: Path, runs: tuple[str, ...] = ()) -> Path:
    """The small demo project at `root`, with one finished run per algorithm named in `runs`."""
    project, _reports = create_demo_project(root, SMALL_DEMO)
    try:
        for algorithm in runs:
            outcome = train(project, quick_settings(algorithm), JsonEvents(io.StringIO()))
            assert outcome.status == "finished", outcome
    finally:
        project.close()
    return root


def project_copy(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a module's template project for one test (tests change it)."""
    target = tmp_path / "demo"
    shutil.copytree(template, target)
    return target


def studio_window(qtbot, root: Path, dialogs, size: tuple[int, int] = (1300, 820)):
    """The main window on the project at `root`, closed by qtbot at the end of the test."""
    from app.main_window import MainWindow

    window = MainWindow(dialogs=dialogs)
    qtbot.addWidget(window)
    window.resize(*size)
    assert window.open_project(root)
    return window
