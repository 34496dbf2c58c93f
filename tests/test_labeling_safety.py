"""Labeling is safe with several writers and in bulk: two processes on one face keep a consistent
corrections log (each row's old label is the previous row's new label); bulk steps leave val/test
and already-labeled faces alone unless asked, and say what they left out (core and CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from core import labeling
from core.cli import main as cli_main
from core.labeling import LabelingError
from core.store.models import RUN_FINISHED, SOURCE_IMPORTED, Correction, Image, Label, Prediction, Run

REPO = Path(__file__).resolve().parents[1]
WRITES_PER_PROCESS = 150

# Each annotator process opens the project, says it is ready, waits for the start file (so all
# begin together), then makes its changes, one transaction per call as in the studio.
READY_THEN_START = """
import json, sys, time
from pathlib import Path
from core import labeling
from core.store.project import Project

root, name, start, *args = sys.argv[1:]
with Project.open(root) as project:
    Path(start + "." + name).touch()
    while not Path(start).exists():
        time.sleep(0.001)
"""
# Labels face 1 alternately with its two labels.
WRITER = (
    READY_THEN_START
    + """
    first, second, count = args
    for i in range(int(count)):
        labeling.set_label(project, 1, first if i % 2 == 0 else second, name)
"""
)
# Undoes `count` steps (anyone's) and prints how many faces they changed and how many kept
# their label (a step undone twice would change none the second time).
UNDOER = (
    READY_THEN_START
    + """
    steps = [labeling.undo(project) for _ in range(int(args[0]))]
    changes = [c for s in steps for c in s.changes]
    changed = sum(c.old_label != c.new_label for c in changes)
    print(json.dumps([changed, len(changes) - changed]))
"""
)


def add_faces(project, splits: dict[int, str]) -> None:
    with project.session() as s:
        for face_id, split in splits.items():
            s.add(
                Image(
                    id=face_id, path=f"{face_id}.png", content_hash=f"{face_id:064x}", width=48, height=48, split=split
                )
            )


def log_rows(project) -> list[tuple[int, str | None, str | None]]:
    with project.session() as s:
        return [(c.image_id, c.old_label, c.new_label) for c in s.scalars(select(Correction).order_by(Correction.id))]


# -- two writers -----------------------------------------------------------------------------------
def run_together(project, tmp_path, script: str, args_by_name: dict[str, list[str]]) -> dict[str, str]:
    """Run `script` in one process per name, started at the same moment; their outputs by name."""
    start = tmp_path / "go"
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", script, str(project.root), name, str(start), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in args_by_name.items()
    }
    deadline = time.monotonic() + 60
    while not all(Path(f"{start}.{name}").exists() for name in processes) and time.monotonic() < deadline:
        time.sleep(0.01)
    start.touch()
    outputs = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs[name] = out
    return outputs


def stale_rows(rows, first_label: str | None) -> list[int]:
    """Indexes of rows whose old label is not what the previous row left (`first_label` before the
    first row)."""
    previous = [first_label] + [new for _face, _old, new in rows[:-1]]
    return [i for i, ((_face, old, _new), before) in enumerate(zip(rows, previous)) if old != before]


def test_two_processes_labeling_one_face_keep_the_log_consistent(project, tmp_path):
    add_faces(project, {1: "train"})
    with project.session() as s:  # labeled already, so every write updates the one label row
        s.add(Label(image_id=1, label="neutral", source=SOURCE_IMPORTED))
    count = str(WRITES_PER_PROCESS)
    run_together(project, tmp_path, WRITER, {"ana": ["fear", "anger", count], "ben": ["happiness", "sadness", count]})
    rows = log_rows(project)
    stale = stale_rows(rows, "neutral")
    assert len(rows) > WRITES_PER_PROCESS  # both wrote (a call repeating the current label logs nothing)
    assert stale == [], (
        f"{len(stale)} of {len(rows)} corrections recorded an old label that was not "
        f"the face's label then (first at row {stale[0]}: {rows[stale[0]]}, "
        f"after {rows[stale[0] - 1]})"
    )


def test_two_processes_undoing_at_once_take_back_each_step_once(project, tmp_path):
    steps = 60
    add_faces(project, {face: "train" for face in range(1, steps + 1)})
    for face in range(1, steps + 1):
        labeling.set_label(project, face, "fear", "ana")
    outputs = run_together(project, tmp_path, UNDOER, {"ana": [str(steps // 2)], "ben": [str(steps // 2)]})
    changed, kept = (sum(counts) for counts in zip(*(json.loads(out) for out in outputs.values())))
    assert (changed, kept) == (steps, 0), (
        f"two undoers changed {changed} and left {kept} faces as they were of "
        f"{steps} one-face steps: some step was undone twice"
    )
    assert labels(project) == {}


def test_a_write_session_holds_the_write_lock_from_its_start_and_readers_still_read(project):
    import sqlite3

    add_faces(project, {1: "train"})
    other = sqlite3.connect(project.root / "project.db", timeout=0)
    try:
        with project.write_session() as session:
            session.scalar(select(Image.id))  # reads only, so far
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("BEGIN IMMEDIATE")
            assert other.execute("SELECT count(*) FROM images").fetchone() == (1,)  # WAL: readers go on
        other.execute("BEGIN IMMEDIATE")  # released at commit
        other.rollback()
    finally:
        other.close()


# -- bulk steps leave val/test and labeled faces alone unless asked -------------------------------
@pytest.fixture
def mixed(project):
    """Faces 1-3 unlabeled train, 4 train labeled fear (imported), 5 val labeled anger (imported),
    6 test unlabeled; run 1 suggests happiness for every face."""
    add_faces(project, {1: "train", 2: "train", 3: "train", 4: "train", 5: "val", 6: "test"})
    with project.session() as s:
        s.add(Run(id=1, algorithm="sitfer", encoder="tiny", status=RUN_FINISHED))
        s.flush()
        s.add_all(
            [
                Label(image_id=4, label="fear", source=SOURCE_IMPORTED),
                Label(image_id=5, label="anger", source=SOURCE_IMPORTED),
            ]
        )
        s.add_all(
            [
                Prediction(run_id=1, image_id=f, p_fused=[1 / 7] * 7, pseudo_label="happiness", confidence=0.4)
                for f in range(1, 7)
            ]
        )
    return project


def labels(project) -> dict[int, str]:
    with project.session() as s:
        return dict(s.execute(select(Label.image_id, Label.label)).all())


ALL = [1, 2, 3, 4, 5, 6]
BEFORE = {4: "fear", 5: "anger"}


def test_selection_summary_counts_labeled_and_val_test_faces(mixed):
    summary = labeling.selection_summary(mixed, ALL + [1])
    assert (summary.faces, summary.labeled, summary.val_test, summary.unlabeled_train) == (6, 1, 2, 3)
    assert summary.describe() == "6 faces selected: 1 already labeled, 2 in val/test"
    assert labeling.selection_summary(mixed, [1]).describe() == "1 face selected"
    with pytest.raises(LabelingError, match="there is no face 99"):
        labeling.selection_summary(mixed, [1, 99])


def test_bulk_label_leaves_val_test_and_labeled_faces_alone_and_says_so(mixed):
    step = labeling.bulk_label(mixed, ALL, "surprise", "ana")
    assert step.face_ids == [1, 2, 3]
    assert (step.left_out.labeled, step.left_out.val_test) == ((4,), (5, 6))
    assert step.describe().endswith("(left out: 1 already labeled, 2 in val/test)")
    assert labels(mixed) == {**BEFORE, 1: "surprise", 2: "surprise", 3: "surprise"}
    labeling.undo(mixed)
    step = labeling.bulk_label(mixed, ALL, "surprise", "ana", include_labeled=True)
    assert step.face_ids == [1, 2, 3, 4] and step.left_out.val_test == (5, 6) and not step.left_out.labeled
    labeling.undo(mixed)
    step = labeling.bulk_label(mixed, ALL, "surprise", "ana", include_val_test=True)  # unlabeled test face 6
    assert step.face_ids == [1, 2, 3, 6] and step.left_out.labeled == (4, 5)
    labeling.undo(mixed)
    step = labeling.bulk_label(mixed, ALL, "surprise", "ana", include_labeled=True, include_val_test=True)
    assert step.face_ids == ALL and not step.left_out
    assert labeling.undo(mixed).face_ids and labels(mixed) == BEFORE


def test_a_bulk_step_on_protected_faces_only_changes_nothing_but_reports_them(mixed):
    step = labeling.bulk_label(mixed, [4, 5], "surprise", "ana")
    assert step.face_ids == [] and step.correction_ids == () and step.annotator == "ana"
    assert step.describe() == "no face changed (left out: 1 already labeled, 1 in val/test)"
    assert labels(mixed) == BEFORE and log_rows(mixed) == []
    assert labeling.undo(mixed) is None  # nothing was logged, so nothing to take back
    assert labeling.bulk_label(mixed, [1, 2], "surprise", "ana").left_out == labeling.LeftOut()


def test_bulk_clear_clears_labeled_train_faces_but_keeps_val_test_labels(mixed):
    step = labeling.clear_labels(mixed, ALL, "ana")
    assert step.face_ids == [4] and step.left_out.val_test == (5, 6) and not step.left_out.labeled
    assert labels(mixed) == {5: "anger"}
    labeling.undo(mixed)
    assert labeling.clear_labels(mixed, ALL, "ana", include_val_test=True).face_ids == [4, 5]
    assert labels(mixed) == {}


def test_accepting_several_suggestions_leaves_labeled_and_val_test_faces_alone(mixed):
    step = labeling.accept_suggestions(mixed, ALL, "ana")
    assert step.face_ids == [1, 2, 3] and step.left_out == labeling.LeftOut((4,), (5, 6))
    assert labels(mixed) == {**BEFORE, 1: "happiness", 2: "happiness", 3: "happiness"}
    labeling.undo(mixed)
    step = labeling.accept_suggestions(mixed, ALL, "ana", include_labeled=True, include_val_test=True)
    assert step.face_ids == ALL


def test_one_face_is_changed_as_asked_whatever_its_split_or_label(mixed):
    assert labeling.set_label(mixed, 5, "fear", "ana").changes[0].old_label == "anger"
    assert labeling.accept_suggestion(mixed, 4, "ana").changes[0].new_label == "happiness"
    assert labeling.clear_label(mixed, 5, "ana").changes[0].new_label is None


# -- the CLI ---------------------------------------------------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_label_of_several_faces_leaves_val_test_and_labeled_alone_unless_included(mixed, capsys):
    faces = ",".join(map(str, ALL))
    code, out, _ = run_cli(capsys, "label", mixed.root, faces, "surprise", "--annotator", "ana")
    assert code == 0 and "face 3: unlabeled -> surprise (left out: 1 already labeled, 2 in val/test)" in out
    assert "To change the faces left out too, add --include-labeled --include-val-test." in out
    assert labels(mixed) == {**BEFORE, 1: "surprise", 2: "surprise", 3: "surprise"}
    code, out, _ = run_cli(capsys, "label", mixed.root, "4,5", "accept", "--annotator", "ana", "--include-labeled")
    assert code == 0 and "face 4: fear -> happiness (left out: 1 in val/test)" in out
    assert "add --include-val-test." in out
    code, out, _ = run_cli(
        capsys, "label", mixed.root, "5,6", "sadness", "--annotator", "ana", "--include-labeled", "--include-val-test"
    )
    assert code == 0 and "face 5: anger -> sadness" in out and "left out" not in out.lower()
    code, out, _ = run_cli(capsys, "label", mixed.root, "5,6", "fear", "--annotator", "ana")
    assert code == 0 and "Nothing changed (left out: 2 in val/test)." in out
    assert labels(mixed)[5] == "sadness"
