"""Export from a tampered database: nothing is written outside the output folder, nothing but
images is copied, and every refused face is in the report with the reason (issue 19, item 6)."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.export import export_project
from core.ingest.importer import ImportOptions, import_source
from core.store.project import Project
from tests.imagegen import write_class_folders

REPO = Path(__file__).resolve().parent.parent
SECRET = "root:x:0:0:not an image, never to be copied\n"


def export_cli(*args, check: int = 0) -> subprocess.CompletedProcess:
    # A subprocess with a timeout: a regression that blocks (a FIFO) fails instead of hanging.
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "export", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def files_under(root: Path, *, leaving_out: tuple[Path, ...] = ()) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_dir() and not any(o in p.parents for o in leaving_out)}


@pytest.fixture
def labeled_project(tmp_path) -> Path:
    """Six labeled faces, one per tampering below plus one good one; returns the project folder."""
    src = write_class_folders(tmp_path / "src", {"happy": 6})
    project = Project.create(tmp_path / "proj")
    report = import_source(project, src, ImportOptions(faces="none", workers=1))
    project.close()
    assert report.imported == 6 and report.labeled == 6
    return tmp_path / "proj"


def export_in_process(project_dir: Path, out: Path, fmt: str):
    project = Project.open(project_dir)
    try:
        return export_project(project, out, fmt)
    finally:
        project.close()


def tamper(project_dir: Path, *statements: tuple[str, tuple]) -> None:
    with sqlite3.connect(project_dir / "project.db") as db:
        for sql, params in statements:
            assert db.execute(sql, params).rowcount == 1, sql


def test_tampered_labels_splits_and_paths_stay_out_of_the_export(labeled_project, tmp_path):
    text_file = tmp_path / "secret.png"  # an image's name, not an image's bytes
    text_file.write_text(SECRET, encoding="utf-8")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    tamper(
        labeled_project,
        ("UPDATE labels SET label = ? WHERE image_id = 1", ("../../../../x",)),
        ("UPDATE images SET split = ? WHERE id = 2", ("../../../x",)),
        ("UPDATE images SET path = ? WHERE id = 3", (str(text_file),)),
        ("UPDATE images SET path = ? WHERE id = 4", (str(fifo),)),
        ("UPDATE images SET path = ? WHERE id = 5", ("/etc/passwd",)),
    )
    out = tmp_path / "a" / "b" / "c" / "d" / "out"  # deep, so an escape would land in tmp_path
    before = files_under(tmp_path, leaving_out=(labeled_project,))

    proc = export_cli(labeled_project, out, "--format", "folders")

    written = files_under(out)
    assert files_under(tmp_path, leaving_out=(labeled_project, out)) == before
    images = sorted(p.relative_to(out).as_posix() for p in written if p.suffix != ".csv")
    assert images == ["train/happiness/6_happy_0005.png"]
    for path in written:
        assert SECRET not in path.read_bytes().decode("utf-8", "replace"), path
    with (out / "labels.csv").open(encoding="utf-8") as handle:
        assert [row["image_id"] for row in csv.DictReader(handle)] == ["6"]
    reasons = proc.stdout
    assert "Skipped 5 face(s)" in reasons
    assert "unknown label '../../../../x'" in reasons
    assert "unknown split '../../../x'" in reasons
    assert f"{text_file}: not an image" in reasons
    assert f"{fifo}: not a regular file (FIFO)" in reasons
    assert "/etc/passwd: " in reasons


def test_csv_export_leaves_out_unknown_labels_too(labeled_project, tmp_path):
    tamper(labeled_project, ("UPDATE labels SET label = ? WHERE image_id = 2", ("rage",)))
    report = export_in_process(labeled_project, tmp_path / "out", "csv")
    assert report.labeled == 5
    [(path, reason)] = report.skipped
    assert path.endswith("happy_0001.png")
    assert reason.startswith("unknown label 'rage' (not one of ") and "happiness" in reason


def test_a_link_inside_the_output_folder_cannot_lead_out(labeled_project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "train").symlink_to(elsewhere, target_is_directory=True)

    proc = export_cli(labeled_project, out, "--format", "folders", "--overwrite")

    assert list(elsewhere.iterdir()) == []
    assert "Skipped 6 face(s)" in proc.stdout
    assert f"resolves to {elsewhere}/happiness/1_happy_0000.png, outside the output folder" in proc.stdout


def test_a_face_box_outside_its_image_is_refused_before_cropping(labeled_project, tmp_path):
    # Cropping pads beyond the edges: this box would allocate about 40 GB.
    tamper(
        labeled_project,
        ("UPDATE images SET face_x = 0, face_y = 0, face_w = 100000, face_h = 100000 WHERE id = ?", (1,)),
    )
    report = export_in_process(labeled_project, tmp_path / "out", "folders")
    assert report.files_written == 5
    [(path, reason)] = report.skipped
    assert path.endswith("happy_0000.png")
    assert reason == "face box 0,0 100000x100000 lies outside the 48x48 image"
