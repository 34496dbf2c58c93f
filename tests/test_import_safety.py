"""Import stays inside its source and reads only regular files of a usable size (issue 19, items
7, 8 and 12): symbolic links out of the source, FIFOs, devices, tiny faces, concurrent decodes."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage

from core.ingest import importer
from core.ingest.budget import MemoryBudget
from core.ingest.imageio import decode_cost, open_image_file
from core.ingest.importer import MIN_FACE_SIDE, ImportOptions, import_source
from core.ingest.sources import SourceError
from tests.imagegen import face_like, save, write_class_folders

REPO = Path(__file__).resolve().parent.parent


def cli(*args, check: int) -> subprocess.CompletedProcess:
    # Always with a timeout: reading a FIFO blocks forever, and a regression must fail, not hang.
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def skipped(report) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in report.skipped}


# -- 7: symbolic links ------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the source: two images and a file that is no image."""
    folder = write_class_folders(tmp_path / "outside", {"x": 2}, seed0=50) / "x"
    (folder / "passwd").write_text("root:x:0:0\n", encoding="utf-8")
    return folder


def test_a_class_folder_linked_out_of_the_source_is_not_read(project, tmp_path, outside):
    src = write_class_folders(tmp_path / "src", {"sad": 2})
    (src / "happy").symlink_to(outside, target_is_directory=True)

    report = import_source(project, src, ImportOptions(faces="none"))

    assert report.imported == 2 and report.files == 3  # two images and the link itself
    assert skipped(report) == {
        "happy": f"symbolic link outside the source folder (to {outside}; use --follow-links to include it)"
    }

    report = import_source(project, src, ImportOptions(faces="none", follow_links=True))
    assert report.imported == 2 and report.labeled == 2
    assert skipped(report)["passwd"].startswith("not an image")


def test_links_inside_a_class_folder(project, tmp_path, outside):
    src = write_class_folders(tmp_path / "src", {"happy": 1})
    save(face_like(90), src / ".raw" / "kept.png")  # hidden: reachable only through the link
    (src / "happy" / "inside.png").symlink_to(src / ".raw" / "kept.png")
    (src / "happy" / "out.png").symlink_to(outside / "x_0000.png")
    (src / "happy" / "out_folder").symlink_to(outside, target_is_directory=True)
    (src / "happy" / "loop").symlink_to(src, target_is_directory=True)
    (src / "happy" / "self").symlink_to(src / "happy", target_is_directory=True)

    report = import_source(project, src, ImportOptions(faces="none"))

    assert report.imported == 2 and report.labeled == 2  # happy_0000.png and the inside link
    reasons = skipped(report)
    assert sorted(reasons) == ["loop", "out.png", "out_folder", "self"]
    assert reasons["out.png"] == (
        f"symbolic link outside the source folder (to {outside / 'x_0000.png'}; use --follow-links to include it)"
    )
    assert reasons["loop"].startswith(f"symbolic link loop (to {src}, a folder that contains it")
    assert reasons["self"].startswith(f"symbolic link loop (to {src / 'happy'}")


def test_unlabeled_walk_and_cli_flag(tmp_path, outside):
    src = tmp_path / "flat"
    save(face_like(1), src / "a.png")
    (src / "more").symlink_to(outside, target_is_directory=True)
    proc = cli("import", tmp_path / "p", src, "--unlabeled", "--faces", "none", "--json", check=0)
    report = json.loads(proc.stdout)
    assert report["imported"] == 1
    assert [s["path"] for s in report["skipped"]] == [str(src / "more")]
    assert "use --follow-links to include it" in report["skipped"][0]["reason"]

    proc = cli("import", tmp_path / "p", src, "--unlabeled", "--faces", "none", "--follow-links", "--json", check=0)
    assert json.loads(proc.stdout)["imported"] == 2


# -- 8: FIFOs and devices ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.csv", "x.png"])
def test_a_fifo_as_the_source_is_refused_at_once(tmp_path, name):
    os.mkfifo(tmp_path / name)
    proc = cli("import", tmp_path / "p", tmp_path / name, check=2)
    assert f"{tmp_path / name}: not a regular file (FIFO)" in proc.stderr


def test_fifos_and_devices_in_a_folder_or_a_manifest_are_not_regular_files(tmp_path):
    src = write_class_folders(tmp_path / "src", {"happy": 1})
    os.mkfifo(src / "happy" / "pipe.png")
    os.mkfifo(src / "top.jpg")  # directly in SOURCE: used to vanish without a word
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"path\n{src / 'happy' / 'pipe.png'}\n/dev/zero\n{tmp_path / 'sub'}\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()

    report = json.loads(cli("import", tmp_path / "p", src, "--json", check=0).stdout)
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert reasons == {"pipe.png": "not a regular file (FIFO)", "top.jpg": "not a regular file (FIFO)"}

    report = json.loads(cli("import", tmp_path / "p", manifest, "--json", check=1).stdout)
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert reasons == {
        "pipe.png": "not a regular file (FIFO)",
        "zero": "not a regular file (character device)",
        "sub": "not a regular file (folder)",
    }


def test_a_followed_link_to_a_device_is_not_read(project, tmp_path):
    src = tmp_path / "src"
    save(face_like(1), src / "a.png")
    (src / "zero.png").symlink_to("/dev/zero")
    report = import_source(project, src, ImportOptions(faces="none", follow_links=True))
    assert report.imported == 1
    assert skipped(report) == {"zero.png": "not a regular file (character device)"}


def test_open_image_file_refuses_a_fifo_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(Exception, match=r"not a regular file \(FIFO\)"), open_image_file(tmp_path / "pipe"):
        pass


def test_a_missing_source_still_says_so(project, tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        import_source(project, tmp_path / "nothing")


# -- 12: tiny faces and the decode memory budget ----------------------------------------------


def test_faces_under_the_minimum_side_are_refused_with_the_size(project, tmp_path):
    src = tmp_path / "src"
    save(PILImage.new("RGB", (1, 1), (200, 120, 90)), src / "dot.png")
    save(face_like(2, size=40).crop((0, 0, 40, MIN_FACE_SIDE - 1)), src / "strip.png")
    save(face_like(3, size=MIN_FACE_SIDE), src / "smallest.png")
    report = import_source(project, src, ImportOptions(faces="none"))
    assert report.imported == 1
    assert skipped(report) == {
        "dot.png": f"face too small (1x1 px; at least {MIN_FACE_SIDE} px a side)",
        "strip.png": f"face too small (40x{MIN_FACE_SIDE - 1} px; at least {MIN_FACE_SIDE} px a side)",
    }


def test_the_budget_admits_in_order_and_never_past_its_limit():
    budget = MemoryBudget(100, multiprocessing.get_context("spawn"))
    with budget.reserve(60):
        assert not budget.try_reserve(60)  # would hold 120 of 100
        assert budget.try_reserve(40)
        budget.release(40)
    assert budget.try_reserve(250)  # larger than the budget: admitted alone, never stuck
    assert not budget.try_reserve(1)
    budget.release(250)
    assert budget.peak == 250 and budget.admitted == 3


def test_parallel_decodes_share_one_budget(project, tmp_path, monkeypatch):
    src = tmp_path / "src"
    for i in range(6):
        save(face_like(i, size=300, mode="RGB"), src / f"big_{i}.png")
    with open_image_file(src / "big_0.png") as one:
        cost = decode_cost(one.size, one.header())
    limit = cost * 3 // 2  # one big file fits, two never do
    budgets: list[MemoryBudget] = []

    def small_budget(context):
        budgets.append(MemoryBudget(limit, context))
        return budgets[-1]

    monkeypatch.setattr(importer, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(importer, "_make_decode_budget", small_budget)
    report = import_source(project, src, ImportOptions(faces="none", workers=2))

    assert report.imported == 6, report.summary()
    [budget] = budgets
    assert budget.admitted == 6  # every decode in the workers went through the budget
    assert cost * 0.9 <= budget.peak <= limit
