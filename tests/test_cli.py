"""The command line end to end, as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imagegen import face_like, save, write_class_folders

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "demo"
    proc = cli("demo", root, "--train-per-class", 20, "--val-per-class", 6, "--labeled-per-class", 3, "-q")
    assert "Demo project ready" in proc.stdout
    return root


def test_demo_then_stats_json(demo_project):
    stats = json.loads(cli("stats", demo_project, "--json").stdout)
    assert stats["images"] == 7 * 26
    assert stats["by_split"]["train"] == {"images": 140, "labeled": 21, "unlabeled": 119}
    assert stats["by_split"]["val"] == {"images": 42, "labeled": 42, "unlabeled": 0}
    assert stats["labeled"] == 63 and stats["unlabeled"] == 119 and stats["hidden_truth"] == 119
    assert all(stats["by_label"][name] == 9 for name in stats["by_label"])
    text = cli("stats", demo_project).stdout
    assert "faces: 182" in text and "hidden ground truth: 119" in text


def test_demo_refuses_a_project_with_faces(demo_project):
    proc = cli("demo", demo_project, check=3)
    assert "already holds 182 faces" in proc.stderr


def test_export_csv_and_folders(demo_project, tmp_path):
    cli("export", demo_project, tmp_path / "csv")
    with (tmp_path / "csv" / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 63 and {r["label_source"] for r in rows} == {"imported"}
    assert (tmp_path / "csv" / "corrections.csv").read_text(encoding="utf-8").startswith("id,image_id,path,annotator")

    cli("export", demo_project, tmp_path / "folders", "--format", "folders", "--split", "val")
    files = sorted((tmp_path / "folders").glob("val/*/*.png"))
    assert len(files) == 42 and {f.parent.name for f in files} == {
        "surprise",
        "fear",
        "disgust",
        "happiness",
        "sadness",
        "anger",
        "neutral",
    }
    proc = cli("export", demo_project, tmp_path / "folders", check=2)
    assert "not empty" in proc.stderr


def test_import_report_exit_codes_and_json(tmp_path):
    write_class_folders(tmp_path / "src", {"happy": 3, "angry": 2})
    (tmp_path / "src" / "happy" / "broken.jpg").write_bytes(b"nope")
    proc = cli("import", tmp_path / "p", tmp_path / "src", "--split", "val", "--json")
    report = json.loads(proc.stdout)
    assert report["imported"] == 5 and report["skipped"][0]["path"].endswith("broken.jpg")

    # Nothing importable: exit 1 with the reasons.
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("text", encoding="utf-8")
    proc = cli("import", tmp_path / "p", tmp_path / "junk", check=1)
    assert "a.png: not an image" in proc.stdout and "nothing could be imported" in proc.stderr

    # Bad input and options: exit 2 with a message naming the problem.
    write_class_folders(tmp_path / "odd", {"smiling": 1}, seed0=100)
    proc = cli("import", tmp_path / "p", tmp_path / "odd", check=2)
    assert "smiling" in proc.stderr and "--map" in proc.stderr
    cli("import", tmp_path / "p", tmp_path / "odd", "--map", "smiling=happy", "-q")
    # Importing the same files again is not a failure: nothing new, exit 0.
    proc = cli("import", tmp_path / "p", tmp_path / "odd", "--map", "smiling=happy", "-q")
    assert "Nothing new" in proc.stdout
    proc = cli("import", tmp_path / "p", tmp_path / "odd", "--map", "smiling", check=2)
    assert "expected NAME=CLASS" in proc.stderr
    proc = cli("import", tmp_path / "p", tmp_path / "src", "--margin", "-1", check=2)
    assert "--margin" in proc.stderr
    proc = cli("import", tmp_path / "p", tmp_path / "src", "--split", "holdout", check=2)
    assert "invalid choice" in proc.stderr


def test_unicode_paths_end_to_end(tmp_path):
    folder = tmp_path / "données" / "happy"
    save(face_like(1), folder / "sourire_😀.png")
    cli("import", tmp_path / "projet_é", tmp_path / "données", "-q")
    stats = json.loads(cli("stats", tmp_path / "projet_é", "--json").stdout)
    assert stats["by_label"]["happiness"] == 1


def test_missing_project_is_exit_3(tmp_path):
    proc = cli("stats", tmp_path / "nothing", check=3)
    assert "is not a project" in proc.stderr and "main.py init" in proc.stderr


def test_init_and_help(tmp_path):
    assert "Created project" in cli("init", tmp_path / "new").stdout
    assert "already a project" in cli("init", tmp_path / "new", check=3).stderr
    for command in ("import", "stats", "export", "demo", "init"):
        assert "usage:" in cli(command, "--help").stdout
    assert "exit codes" in cli("--help").stdout
