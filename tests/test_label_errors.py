"""Suspected label errors (core/active/label_errors.py and the queue's label_errors strategy):
planted wrong labels found on separable features, the reason naming the label and the
out-of-fold class, too few labels refused in words, the cache read back and recomputed when a
label changes, faces without cached features said to be unchecked, and the strategy's own label
filter honoured by build_queue, `main.py queue` and the studio's review queue."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.active import QueueError, QueueFilters, build_queue, queue_advice
from core.active.label_errors import (
    CACHE_FOLDER,
    LabelCheck,
    check_labels,
    label_note,
    out_of_fold_probabilities,
    suspected_label_errors,
    too_few_labels,
)
from core.active.queue import UNCHECKED_NOTE
from core.classes import class_names
from core.cli import main as cli_main
from core.ingest.demo import DemoSettings, create_demo_project
from core.labeling import clear_label, set_label
from core.store.project import Project
from core.training.events import JsonEvents
from core.training.worker import train
from tests.studio_runs import project_copy, quick_settings

NAMES = class_names()
PER_CLASS_LABELED = 10  # every demo class fully checkable with 5 folds
RUN = 1
NOTE = re.compile(r"^labeled (\w+) \(out-of-fold (\d\.\d\d)(, its most probable class)?\)")


# -- the check on feature arrays -------------------------------------------------------------------
def separable(per_class: int = 30, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seven well separated clusters, one per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(NAMES), dim)) * 4.0
    labels = np.repeat(np.arange(len(NAMES)), per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def plant(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`share` of the labels moved to another class, uniformly; (noisy labels, planted rows)."""
    rng = np.random.default_rng(seed)
    planted = rng.choice(len(labels), round(share * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[planted] = (labels[planted] + rng.integers(1, len(NAMES), len(planted))) % len(NAMES)
    return noisy, planted


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_wrong_labels_rank_first(seed):
    features, truth = separable(seed=seed)
    noisy, planted = plant(truth, 0.10, seed)
    check = check_labels(features, noisy, seed=seed)
    top = check.order()[: len(planted)]
    assert len(set(top) & set(planted)) >= 0.9 * len(planted)  # recall in the top k = planted
    # cleanlab's flags (pruned by the estimated noise rate) are cautious: most planted ones, few others.
    assert check.flagged[planted].mean() >= 0.7
    assert np.isin(np.flatnonzero(check.flagged), planted).mean() >= 0.85
    # The quality is the out-of-fold probability of the given label, so a planted label's is low.
    rows = np.arange(len(noisy))
    assert np.allclose(check.quality, check.probs[rows, noisy], atol=1e-6)
    assert np.median(check.quality[planted]) < np.median(np.delete(check.quality, planted)) / 2
    # The order is by ascending quality, the least likely label first.
    assert (np.diff(check.quality[check.order()]) >= 0).all()


def test_out_of_fold_probabilities_never_see_the_label():
    """A face alone in its cluster with a label of its own class kind: in sample a flexible model
    would keep it; out of fold the other faces outvote it."""
    features, truth = separable(per_class=10, seed=3)
    noisy = truth.copy()
    noisy[0] = 1  # a class-0 face labeled class 1
    probs, _strength = out_of_fold_probabilities(features, noisy)
    assert probs.shape == (len(noisy), len(NAMES))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0].argmax() == 0 and probs[0, 1] < 0.1


def test_classes_nobody_labeled_get_no_probability():
    features, truth = separable(per_class=12, seed=4)
    keep = truth != len(NAMES) - 1
    check = check_labels(features[keep], truth[keep])
    assert np.all(check.probs[:, -1] == 0) and np.allclose(check.probs.sum(axis=1), 1.0)
    assert check.flagged.sum() <= 1  # clean, separable labels


def test_too_few_labels_are_refused_in_words():
    _features, truth = separable(per_class=8)
    short = np.concatenate([truth[truth != 2], [2, 2, 2]])
    problem = too_few_labels(short)
    assert problem is not None
    assert f"{NAMES[2]} has 3" in problem and "at least 5 labeled faces" in problem
    with pytest.raises(ValueError, match=f"{NAMES[2]} has 3"):
        out_of_fold_probabilities(np.zeros((len(short), 4)), short)
    assert "at least two classes" in (too_few_labels(np.zeros(9, dtype=np.int64)) or "")
    assert too_few_labels(truth) is None


def test_the_note_names_the_label_and_the_out_of_fold_class():
    probs = np.zeros((2, len(NAMES)))
    disgust, anger = NAMES.index("disgust"), NAMES.index("anger")
    probs[0, [disgust, anger]] = 0.04, 0.81
    probs[0, NAMES.index("fear")] = 0.15
    probs[1, [disgust, anger]] = 0.7, 0.3
    check = LabelCheck(np.array([disgust, disgust]), probs, probs[:, disgust], np.array([True, False]), 0.01)
    assert label_note(check, 0) == (
        "labeled disgust (out-of-fold 0.04); out-of-fold 0.81 anger; flagged as a likely wrong label"
    )
    assert label_note(check, 1) == "labeled disgust (out-of-fold 0.70, its most probable class); not flagged"


# -- the strategy on a trained demo run --------------------------------------------------------------
@pytest.fixture(scope="module")
def labeled_template(tmp_path_factory) -> Path:
    """A small demo with 10 of 12 train faces per class labeled and one finished sitfer run."""
    root = tmp_path_factory.mktemp("label-errors") / "demo"
    settings = DemoSettings(train_per_class=12, val_per_class=2, labeled_per_class=PER_CLASS_LABELED)
    project, _reports = create_demo_project(root, settings)
    try:
        assert train(project, quick_settings("sitfer"), JsonEvents(io.StringIO())).status == "finished"
    finally:
        project.close()
    return root


@pytest.fixture
def demo(labeled_template, tmp_path) -> Project:
    project = Project.open(project_copy(labeled_template, tmp_path))
    yield project
    project.close()


def cache_files(project: Project) -> list[Path]:
    return sorted((project.cache_dir("features") / CACHE_FOLDER).glob("*.npz"))


def test_the_queue_ranks_labeled_faces_with_the_label_in_the_reason(demo):
    items = build_queue(demo, RUN, "label_errors", 200)
    assert len(items) == len(NAMES) * PER_CLASS_LABELED  # every labeled train face, no unlabeled one
    assert all(item.label is not None for item in items)
    flagged = ["; flagged as a likely wrong label" in item.reason for item in items]
    assert any(flagged) and not all(flagged)  # cleanlab's verdict is said in each reason
    for item in items:
        note = NOTE.match(item.reason)
        assert note and note.group(1) == item.label, item.reason
        assert item.score == pytest.approx(float(note.group(2)), abs=0.006)  # the score is that probability
        if not note.group(3):  # another class is more probable out of fold: named with its probability
            assert re.match(r"^labeled \w+ \(out-of-fold \d\.\d\d\); out-of-fold \d\.\d\d \w+;", item.reason)
        assert "margin " in item.reason  # the usual facts follow
    assert [item.score for item in items] == sorted(item.score for item in items)  # least likely label first
    # Other strategies keep working on unlabeled faces by default; label_errors cannot rank those.
    assert all(item.label is None for item in build_queue(demo, RUN, "margin", 200))
    with pytest.raises(QueueError, match="ranks labeled or corrected or all faces, not unlabeled ones"):
        build_queue(demo, RUN, "label_errors", 10, filters=QueueFilters(labels="unlabeled"))
    # Corrected: only the faces an annotator labeled, checked against all the labeled ones.
    face = items[-1].face_id
    other = next(name for name in NAMES if name != items[-1].label)
    set_label(demo, face, other, "tester")
    corrected = build_queue(demo, RUN, "label_errors", 10, filters=QueueFilters(labels="corrected"))
    assert [item.face_id for item in corrected] == [face]
    assert corrected[0].reason.startswith(f"labeled {other} (out-of-fold ")


def test_the_check_is_cached_and_recomputed_when_a_label_changes(demo):
    with demo.session() as session:
        first = suspected_label_errors(demo, session, RUN)
        again = suspected_label_errors(demo, session, RUN)
    assert not first.from_cache and again.from_cache
    assert [path.name for path in cache_files(demo)] == [cache_files(demo)[0].name]
    assert np.array_equal(first.face_ids, again.face_ids)
    assert np.allclose(first.check.probs, again.check.probs, atol=1e-6)
    assert np.array_equal(first.check.flagged, again.check.flagged)
    before = cache_files(demo)

    face = int(first.face_ids[0])
    given = NAMES[int(first.check.labels[0])]
    other = next(name for name in NAMES if name != given)
    set_label(demo, face, other, "tester")
    with demo.session() as session:
        changed = suspected_label_errors(demo, session, RUN)
    assert not changed.from_cache
    assert NAMES[int(changed.check.labels[0])] == other
    assert len(cache_files(demo)) == 1 and cache_files(demo) != before  # the old labeled set's file went
    items = build_queue(demo, RUN, "label_errors", 200)
    assert next(i for i in items if i.face_id == face).reason.startswith(f"labeled {other} (out-of-fold ")

    set_label(demo, face, given, "tester")  # back to the first labeled set: its own fingerprint again
    with demo.session() as session:
        back = suspected_label_errors(demo, session, RUN)
    assert not back.from_cache and cache_files(demo) == before
    assert np.allclose(back.check.probs, first.check.probs, atol=1e-6)


def test_too_few_labels_give_a_clear_queue_error(demo):
    with demo.session() as session:
        face_ids = suspected_label_errors(demo, session, RUN).face_ids
    items = {item.face_id: item.label for item in build_queue(demo, RUN, "label_errors", 200)}
    disgust = [face for face in face_ids if items[int(face)] == "disgust"]
    for face in disgust[:-3]:
        clear_label(demo, int(face), "tester")
    with pytest.raises(QueueError, match=r"the train split has 63 labeled faces: .*disgust has 3"):
        build_queue(demo, RUN, "label_errors", 10)


def test_faces_without_cached_features_are_said_to_be_unchecked(demo):
    # Drop one labeled face's face mesh from the landmark cache: its head input is incomplete.
    items = build_queue(demo, RUN, "label_errors", 200)
    face = items[0].face_id
    (shard,) = (demo.cache_dir("features") / "landmarks").rglob("shard_*.npz")
    with np.load(shard) as data:
        kept = data["ids"] != face
        entries = {key: data[key][kept] for key in ("ids", "points", "found")}
    np.savez(shard, **entries)
    for path in cache_files(demo):
        path.unlink()
    items = build_queue(demo, RUN, "label_errors", 200)
    assert items[-1].face_id == face and items[-1].reason.startswith(UNCHECKED_NOTE) and items[-1].score == 1.0
    assert all(NOTE.match(item.reason) for item in items[:-1])
    advice = queue_advice("label_errors", items)
    assert advice is not None and advice.headline == "1 not checked" and "main.py features" in advice.detail
    assert cache_files(demo) == []  # an incomplete check is not kept
    # No features at all: said, with the command that computes them.
    shutil.rmtree(next(p for p in demo.cache_dir("features").iterdir() if p.is_dir() and p.name.startswith("tiny")))
    with pytest.raises(QueueError, match=r"none of the 70 labeled faces .* has cached features .*main\.py features"):
        build_queue(demo, RUN, "label_errors", 10)


def test_the_command_line_uses_the_strategys_label_filter(demo, capsys):
    root = str(demo.root)
    assert cli_main(["queue", root, "--strategy", "label_errors", "--limit", "5", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert len(items) == 5 and all(item["label"] and NOTE.match(item["reason"]) for item in items)
    assert cli_main(["queue", root, "--strategy", "label_errors", "--labels", "unlabeled"]) == 2
    assert "ranks labeled or corrected or all faces, not unlabeled ones" in capsys.readouterr().err
    assert cli_main(["queue", root, "--strategy", "margin", "--json"]) == 0
    assert all(item["label"] is None for item in json.loads(capsys.readouterr().out))


def test_the_studio_queue_switches_to_the_strategys_faces(qtbot, demo):
    pytest.importorskip("PySide6")
    from tests.studio_runs import studio_window
    from tests.test_app import FakeDialogs

    root = demo.root
    demo.close()
    window = studio_window(qtbot, root, FakeDialogs())
    window.show()
    qtbot.waitExposed(window)
    window.show_review()
    review = window.review

    def shown() -> list[int]:
        qtbot.waitUntil(lambda: not review.building and review.answered == review.request(), timeout=20_000)
        return [review.model.face(row).id for row in range(review.model.rowCount())]

    assert review.labels_combo.currentData() == "unlabeled"
    shown()
    review.set_strategy("label_errors")
    assert review.labels_combo.currentData() == "labeled"
    unlabeled = review.labels_combo.model().item(review.labels_combo.findData("unlabeled"))
    assert not unlabeled.isEnabled()
    with Project.open(root) as project:
        expected = [item.face_id for item in build_queue(project, RUN, "label_errors", review.limit_spin.value())]
    assert shown() == expected
    assert review.pages.currentWidget() is review.grid
    review.set_strategy("margin")
    assert review.labels_combo.currentData() == "unlabeled" and unlabeled.isEnabled()
    window.close()
