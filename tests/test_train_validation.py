"""`train` checks every setting before a run exists (issue 19, item 11): non-finite and
out-of-range values and a missing or broken --descriptions file exit 2 with the flag and its
value named, and leave no run in the project."""

from __future__ import annotations

import io
import math
from dataclasses import fields
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.cli import main
from core.ingest.demo import DemoSettings, create_demo_project
from core.ssl.config import METHOD_RANGES, MethodConfig, SettingError
from core.store.models import Run
from core.store.project import Project
from core.training.events import JsonEvents
from core.training.settings import LOOP_RANGES, SETTINGS_RANGES, LoopConfig, TrainSettings
from core.training.worker import RunError, train

# Short runs, so that a setting that slips through fails the test quickly instead of training long.
FAST = ["--encoder", "tiny", "--projection", "pca", "--steps", "5", "--batch-size", "8", "--strong-views", "1"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("validation") / "demo"
    project, _ = create_demo_project(root, DemoSettings(train_per_class=4, val_per_class=1, labeled_per_class=2))
    project.close()
    return root


def run_count(root: Path) -> int:
    with Project.open(root) as project, project.session() as session:
        return session.scalar(select(func.count()).select_from(Run))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--weights", "nan,1,1"], "--weights nan,1,1: the semantic weight must be a finite number"),
        (["--weights", "1,inf,1"], "--weights 1,inf,1: the text weight must be a finite number"),
        (
            ["--weights", "0,0,0"],
            "--weights 0,0,0: the levels in use (semantic, text, instance) need at least one positive weight",
        ),
        (
            ["--weights", "0,0,1"],
            "--weights 0,0,1: the instance level joins after its warm-up (a share of the steps); "
            "until then semantic and text need a positive weight",
        ),
        (
            ["--weights", "0,0,1", "--instance-warmup", "300"],
            "--weights 0,0,1: the instance level joins after 300 warm-up steps",
        ),
        (["--weights", "1,-1,1"], "--weights 1,-1,1: the text weight must be 0 or more"),
        (["--threshold", "2"], "--threshold 2: must be between 0 and 1, 0 excluded"),
        (["--threshold", "0"], "--threshold 0: must be between 0 and 1, 0 excluded"),
        (["--threshold", "nan"], "--threshold nan: must be a finite number"),
        (["--lr", "nan"], "--lr nan: must be a finite number"),
        (["--lr", "0"], "--lr 0: must be a positive number"),
        (["--weight-decay", "inf"], "--weight-decay inf: must be a finite number"),
        (["--text-tau", "0"], "--text-tau 0: must be a positive number"),
        (["--ema-decay", "1"], "--ema-decay 1: must be between 0 and 1, 1 excluded"),
        (["--dta-floor", "0.9", "--dta-ceiling", "0.8"], "--dta-floor 0.9: must not be above the ceiling (0.8)"),
        (["--instance-top-k", "0"], "--instance-top-k 0: must be 1 or more"),
        (["--steps", "0"], "--steps 0: must be 1 or more"),
        (["--batch-size", "0"], "--batch-size 0: must be 1 or more"),
        (["--strong-views", "17"], "--strong-views 17: must be between 0 and 16"),
        (["--seed", "-1"], "--seed -1: must be between 0 and 4294967295"),
        (["--no-semantic", "--no-text", "--no-instance"], "no level is on"),
        (["--descriptions", "missing.json"], "--descriptions: cannot read descriptions file"),
    ],
)
def test_bad_settings_exit_2_naming_the_flag_and_leave_no_run(root, tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path)  # missing.json: relative to where the command runs
    code = main(["train", str(root), *FAST, *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert run_count(root) == 0


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--steps", "5000"], "--steps 5000 cannot change them"),
        (["--no-text", "--algorithm", "fixmatch"], "--algorithm fixmatch, --no-text cannot change them"),
        (["--text", "--lr", "0.1"], "--lr 0.1, --text cannot change them"),
    ],
)
def test_setting_flags_beside_resume_are_refused_not_ignored(root, capsys, flags, named):
    # Run 7 need not exist: the flags are refused before the project is opened.
    assert main(["train", str(root), "--resume", "7", *flags]) == 2
    err = capsys.readouterr().err
    assert "--resume 7 continues the run with the settings it was started with" in err and named in err
    assert run_count(root) == 0
    assert main(["train", str(root), "--resume", "7", "--events", "json", "-q"]) == 2  # not settings: allowed
    err = capsys.readouterr().err
    assert "run 7" in err and "cannot change" not in err


def test_a_descriptions_file_that_does_not_parse_is_refused_before_a_run(root, tmp_path, capsys):
    broken = tmp_path / "descriptions.json"
    broken.write_text('{"anger": ["a frown"', encoding="utf-8")
    assert main(["train", str(root), *FAST, "--descriptions", str(broken)]) == 2
    assert f"--descriptions: descriptions file {broken} is not valid JSON" in capsys.readouterr().err
    assert run_count(root) == 0


def test_the_worker_itself_refuses_bad_settings_and_a_broken_project_descriptions_file(root, tmp_path):
    """In-process callers (benchmarks, the studio's worker) get the same checks, before a run row."""
    with Project.open(root) as project:
        with pytest.raises(RunError, match=r"threshold 2: must be between 0 and 1, 0 excluded"):
            train(project, TrainSettings(encoder="tiny", method=MethodConfig(threshold=2.0)), JsonEvents(io.StringIO()))
        (project.root / "descriptions.json").write_text("{", encoding="utf-8")
        try:
            with pytest.raises(RunError, match="is not valid JSON"):
                train(project, TrainSettings(encoder="tiny"), JsonEvents(io.StringIO()))
        finally:
            (project.root / "descriptions.json").unlink()
    assert run_count(root) == 0


def test_a_stored_run_with_a_non_finite_setting_is_not_resumed(root, tmp_path):
    settings = TrainSettings(encoder="tiny").to_dict()
    settings["method"]["weights"] = [math.nan, 1.0, 1.0]  # what earlier versions accepted and stored
    checkpoint = tmp_path / "run.pt"
    checkpoint.write_bytes(b"never read")
    with Project.open(root) as project:
        with project.session() as session:
            run = Run(
                algorithm="sitfer",
                encoder="tiny",
                mode="head",
                config=settings,
                status="cancelled",
                checkpoint=str(checkpoint),
            )
            session.add(run)
            session.flush()
            run_id = run.id
        try:
            with pytest.raises(RunError, match=r"cannot be resumed: its settings are not valid \(weights nan,1,1"):
                train(project, TrainSettings(), JsonEvents(io.StringIO()), resume=run_id)
            with project.session() as session:
                assert session.get(Run, run_id).status == "cancelled"
        finally:
            with project.session() as session:
                session.delete(session.get(Run, run_id))


def numeric_fields(cls) -> set[str]:
    return {f.name for f in fields(cls) if "int" in str(f.type) or "float" in str(f.type)}


def test_every_numeric_setting_has_a_range():
    assert numeric_fields(MethodConfig) - {"weights"} == set(METHOD_RANGES)
    assert numeric_fields(LoopConfig) == set(LOOP_RANGES)
    assert numeric_fields(TrainSettings) == set(SETTINGS_RANGES)


@pytest.mark.parametrize("config, ranges", [(MethodConfig, METHOD_RANGES), (LoopConfig, LOOP_RANGES)])
def test_no_numeric_setting_takes_nan_or_infinity(config, ranges):
    for name in ranges:
        for value in (math.nan, math.inf, -math.inf):
            with pytest.raises(SettingError, match=f"^{name} ") as refused:
                config(**{name: value}).validate()
            assert refused.value.name == name
    assert MethodConfig(weights=(1.0, 0.0, 0.0)).validate() is None  # a level may be weighted 0
