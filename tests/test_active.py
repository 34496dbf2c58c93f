"""The review queue: each strategy's order on hand-made probabilities, filters, reasons, the
store loading, and the queue/label/undo/redo/history commands."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from core.active import QueueError, QueueFilters, build_queue, queue_advice, scores
from core.active.data import load_run_predictions
from core.classes import class_names
from core.cli import main as cli_main
from core.store.models import (
    RUN_FINISHED,
    SOURCE_IMPORTED,
    Embedding,
    Image,
    Label,
    Metric,
    Prediction,
    Run,
)
from core.store.project import Project

REPO = Path(__file__).resolve().parent.parent
NAMES = class_names()  # surprise, fear, disgust, happiness, sadness, anger, neutral


def probs(**given: float) -> list[float]:
    """A probability vector: the named classes as given, the rest share what is left."""
    rest = (1.0 - sum(given.values())) / (len(NAMES) - len(given))
    return [given.get(name, rest) for name in NAMES]


def reference_js(*distributions) -> float:
    """Jensen-Shannon divergence in bits, written out plainly to check the vectorised one."""

    def h(p):
        return -sum(x * math.log2(x) for x in p if x > 0)

    mean = [sum(column) / len(distributions) for column in zip(*distributions)]
    return h(mean) - sum(h(p) for p in distributions) / len(distributions)


# -- pure scores ---------------------------------------------------------------------------------
def test_margin_least_confidence_and_entropy_rank_the_unsure_face_first():
    sure, torn = probs(happiness=0.9), probs(fear=0.4, surprise=0.39)
    p = np.array([sure, torn])
    assert scores.margin(p) == pytest.approx([0.9 - 0.1 / 6, 0.01])
    assert np.argsort(scores.margin(p)).tolist() == [1, 0]
    assert scores.least_confidence(p) == pytest.approx([0.1, 0.6])
    uniform = np.full((1, 7), 1 / 7)
    assert scores.entropy(uniform)[0] == pytest.approx(math.log2(7))
    assert scores.entropy(np.eye(7)[:1])[0] == pytest.approx(0.0, abs=1e-9)
    first, second, _p1, _p2 = scores.top_two(p)
    assert [NAMES[i] for i in first] == ["happiness", "fear"] and NAMES[second[1]] == "surprise"


def test_top_two_breaks_ties_by_class_order():
    first, second, _, _ = scores.top_two(np.array([[0.3, 0.3, 0.3, 0.1, 0, 0, 0]]))
    assert (first[0], second[0]) == (0, 1)


def test_js_divergence_ranks_disagreeing_levels_first_and_skips_missing_levels():
    agree = np.array(probs(fear=0.7))
    one_hot = np.eye(7)
    nan = np.full(7, np.nan)
    semantic = np.array([agree, one_hot[0], one_hot[0], one_hot[0]])
    text = np.array([agree, one_hot[3], nan, nan])
    instance = np.array([agree, nan, one_hot[0], nan])
    js = scores.js_divergence([semantic, text, instance])
    assert js[0] == pytest.approx(0.0, abs=1e-9)  # all three agree
    assert js[1] == pytest.approx(1.0)  # two certain levels, two classes: the maximum for two (1 bit)
    torn = np.array(probs(fear=0.4, surprise=0.39)), np.array(probs(disgust=0.6))
    assert scores.js_divergence([torn[0][None], torn[1][None]])[0] == pytest.approx(reference_js(*torn))
    assert js[2] == pytest.approx(0.0, abs=1e-9)  # the missing text level is left out
    assert np.isnan(js[3])  # one level only: no divergence to speak of
    assert np.argsort(-np.nan_to_num(js, nan=-1)).tolist()[0] == 1


def test_near_threshold_orders_faces_under_the_threshold_by_gap_then_the_rest():
    thresholds = np.array([0.8, 0.42, 0.8, 0.8, 0.6, 0.8, 0.8])
    confidence = np.array([0.90, 0.40, 0.55, 0.70, 0.85])
    predicted = np.array([3, 1, 4, 5, 0])
    gap = scores.threshold_gap(confidence, predicted, thresholds)
    assert gap == pytest.approx([-0.10, 0.02, 0.05, 0.10, -0.05])
    assert scores.near_threshold_order(gap, np.arange(5)).tolist() == [1, 2, 3, 4, 0]


def test_k_center_does_not_pick_a_duplicate_before_a_distinct_face():
    points = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0.01, 0]], dtype=np.float32)
    chosen, distances = scores.k_center_greedy(points, 3)
    assert chosen.tolist() == [0, 2, 3]
    assert distances == pytest.approx([0.0, 1.0, 1.0])
    everything, _ = scores.k_center_greedy(points, 10)  # k above n: each row once
    assert sorted(everything.tolist()) == [0, 1, 2, 3, 4]


def test_typicality_is_high_in_a_crowd_and_low_for_an_outlier():
    rng = np.random.default_rng(0)
    crowd = np.array([1.0, 0, 0]) + rng.normal(scale=0.05, size=(30, 3))
    points = np.vstack([crowd, [[0, 1.0, 0]]])  # row 30: alone, far from the crowd
    typical = scores.typicality(points, np.arange(31), k=5, chunk=7)  # chunks smaller than the pool
    assert typical.argmin() == 30 and typical[:30].min() > 3 * typical[30]
    # A face is not its own neighbour: the mean distance to 1 neighbour is the distance to the nearest other row.
    pair = np.array([[1.0, 0], [0.0, 1.0], [0.6, 0.8]])
    expected = 1 / np.linalg.norm(pair[0] - pair[2])
    assert scores.typicality(pair, np.array([0]), k=1) == pytest.approx([expected])


def test_typical_per_cluster_takes_each_blob_centre_not_its_outliers():
    rng = np.random.default_rng(1)
    blob_a = np.array([1.0, 0, 0]) + rng.normal(scale=0.03, size=(12, 3))
    blob_b = np.array([0, 1.0, 0]) + rng.normal(scale=0.03, size=(8, 3))
    points = np.vstack([blob_a, blob_b])
    typical = scores.typicality(points, np.arange(20), k=4)
    picks, sizes = scores.typical_per_cluster(points, typical, 2, seed=0)
    assert sizes.tolist() == [12, 8]  # the larger cluster first
    assert picks[0] == np.argmax(typical[:12]) and picks[1] == 12 + np.argmax(typical[12:])
    again, _ = scores.typical_per_cluster(points, typical, 2, seed=0)
    assert again.tolist() == picks.tolist()
    duplicates = np.repeat([[1.0, 0, 0]], 4, axis=0)  # one distinct point, three clusters asked for
    picks, sizes = scores.typical_per_cluster(duplicates, np.ones(4), 3, seed=0)
    assert len(picks) == len(set(picks.tolist())) and sizes.sum() == 4


def test_a_batch_above_the_restart_cap_still_gets_one_pick_per_cluster():
    k = scores.KMEANS_RESTARTS_UP_TO + 10  # clustered with one k-means++ seeding, not three
    points = np.random.default_rng(2).normal(size=(k + 40, 8))
    picks, sizes = scores.typical_per_cluster(points, scores.typicality(points, np.arange(len(points)), 5), k, 0)
    assert len(picks) == len(set(picks.tolist())) and sizes.sum() == len(points)
    assert len(picks) >= k - 5  # random points in 8-d leave few if any clusters empty


def explicit_gradient_embeddings(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(p - one-hot of the prediction) ⊗ x written out, to check the factorised version."""
    residual = p.copy()
    residual[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
    return np.einsum("nc,nd->ncd", residual, x).reshape(len(p), -1)


def test_badge_follows_the_explicit_gradient_embeddings():
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(7), 40)
    x = rng.normal(size=(40, 5))
    g = explicit_gradient_embeddings(p, x)
    assert scores.gradient_embedding_norms(p, x) == pytest.approx(np.linalg.norm(g, axis=1))
    chosen, gaps = scores.badge_select(p, x, 40, seed=1)
    assert chosen[0] == np.argmax(np.linalg.norm(g, axis=1))  # the longest embedding first
    assert sorted(chosen.tolist()) == list(range(40))  # every face once when k = n
    assert gaps[0] == pytest.approx(np.linalg.norm(g[chosen[0]]))
    for step in range(1, 40):  # each gap is the true distance to the nearest earlier pick
        nearest = np.linalg.norm(g[chosen[:step]] - g[chosen[step]], axis=1).min()
        assert gaps[step] == pytest.approx(nearest, abs=1e-6)
    again, _ = scores.badge_select(p, x, 10, seed=1)
    assert again.tolist() == chosen[:10].tolist()  # seeded
    assert {tuple(scores.badge_select(p, x, 10, seed=s)[0]) for s in range(5)} != {tuple(again)}


def test_badge_never_draws_a_copy_of_a_pick_and_prefers_unsure_faces():
    torn, sure = probs(fear=0.4, surprise=0.39), probs(happiness=0.97)
    p = np.array([torn, torn, torn, sure, probs(anger=0.5, disgust=0.4)])
    x = np.array([[1.0, 0], [1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])  # rows 0-2 are one face three times
    for seed in range(20):
        chosen, _ = scores.badge_select(p, x, 3, seed)
        assert chosen[0] == 0  # ties on length go to the lower row
        assert not {1, 2} & set(chosen[:2].tolist())  # a copy has distance 0: probability 0
    everything, gaps = scores.badge_select(p, x, 5, seed=0)
    assert sorted(everything.tolist()) == [0, 1, 2, 3, 4]  # copies come last, once nothing else is left
    assert gaps[-2:] == pytest.approx([0.0, 0.0])


# -- a hand-made project with one finished run ---------------------------------------------------
SAME, OTHER, THIRD = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
FACES = [  # (split, current label, fused, semantic, text, instance, embedding)
    ("train", None, probs(happiness=0.9), probs(happiness=0.9), probs(happiness=0.9), probs(happiness=0.9), THIRD),
    (
        "train",
        None,
        probs(fear=0.4, surprise=0.39),
        probs(fear=0.4, surprise=0.39),
        probs(disgust=0.6),
        probs(fear=0.4, surprise=0.39),
        SAME,
    ),
    (
        "train",
        None,
        probs(sadness=0.55, neutral=0.35),
        probs(sadness=0.94),
        probs(neutral=0.94),
        probs(neutral=0.94),
        SAME,
    ),
    (
        "train",
        None,
        probs(anger=0.7, disgust=0.2),
        probs(anger=0.7, disgust=0.2),
        probs(anger=0.6, disgust=0.3),
        None,
        OTHER,
    ),
    (
        "train",
        "fear",
        probs(fear=0.34, surprise=0.335),
        probs(fear=0.34, surprise=0.335),
        probs(fear=0.34, surprise=0.335),
        None,
        SAME,
    ),
    (
        "val",
        None,
        probs(fear=0.4, surprise=0.39),
        probs(fear=0.4, surprise=0.39),
        probs(fear=0.4, surprise=0.39),
        None,
        SAME,
    ),
]
THRESHOLDS = {name: 0.8 for name in NAMES} | {"fear": 0.42, "sadness": 0.6}


def make_run_project(
    root: Path, *, thresholds: dict | None = THRESHOLDS, levels: bool = True, embeddings: bool = True
) -> Project:
    """Faces 1-6 above with one finished run (id 1); thresholds logged at two steps, the last wins."""
    project = Project.create(root)
    with project.session() as s:
        s.add(Run(id=1, algorithm="sitfer", encoder="tiny", status=RUN_FINISHED))
        for i, (split, label, fused, sem, text, inst, emb) in enumerate(FACES, start=1):
            s.add(Image(id=i, path=f"{i}.png", content_hash=f"{i:064x}", width=48, height=48, split=split))
            s.flush()
            if label:
                s.add(Label(image_id=i, label=label, source=SOURCE_IMPORTED))
            top = int(np.argmax(fused))
            s.add(
                Prediction(
                    run_id=1,
                    image_id=i,
                    p_fused=fused,
                    p_semantic=sem if levels else None,
                    p_text=text if levels else None,
                    p_instance=inst if levels else None,
                    pseudo_label=NAMES[top],
                    confidence=fused[top],
                    passed_threshold=fused[top] >= THRESHOLDS[NAMES[top]],
                )
            )
            if embeddings:
                s.add(Embedding(run_id=1, image_id=i, vector=np.array(emb, np.float32).tobytes(), dim=3))
        if thresholds:
            s.execute(
                insert(Metric),
                [
                    {"run_id": 1, "step": step, "name": f"threshold_{n}", "value": value}
                    for step, scale in ((10, 0.5), (20, 1.0))
                    for n, value in ((n, v * scale) for n, v in thresholds.items())
                ],
            )
    return project


@pytest.fixture
def run_project(tmp_path):
    project = make_run_project(tmp_path / "p")
    yield project
    project.close()


def face_ids(items) -> list[int]:
    return [item.face_id for item in items]


def test_loading_parses_every_level_and_the_last_thresholds(run_project):
    with run_project.session() as s:
        preds = load_run_predictions(s, 1, "train")
    assert preds.face_ids.tolist() == [1, 2, 3, 4, 5]
    assert preds.labels.tolist() == [None, None, None, None, "fear"]
    assert preds.fused[1] == pytest.approx(probs(fear=0.4, surprise=0.39))
    assert set(preds.levels) == {"semantic", "text", "instance"}
    assert np.isnan(preds.levels["instance"][3]).all() and not np.isnan(preds.levels["instance"][2]).any()
    assert preds.thresholds[NAMES.index("fear")] == pytest.approx(0.42)  # step 20, not step 10
    assert [NAMES[i] for i in preds.predicted] == ["happiness", "fear", "sadness", "anger", "fear"]


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("margin", [2, 3, 4, 1]),
        ("least_confidence", [2, 3, 4, 1]),
        ("entropy", [2, 3, 4, 1]),
        ("disagreement", [3, 2, 4, 1]),  # face 1: all levels agree (JS 0)
        ("near_threshold", [2, 3, 4, 1]),  # gaps 0.02, 0.05, 0.10 under; face 1 is 0.10 over
        ("diversity", [2, 4, 1, 3]),  # face 3 repeats face 2's embedding: last
        ("badge", None),  # seeded draws: checked below
        # faces 2 and 3 share an embedding: one cluster, its pick the less sure; then the
        # one-face clusters by margin; face 3 tops the batch up once the clusters run out
        ("typical_margin", [2, 4, 1, 3]),
    ],
)
def test_each_strategy_orders_the_unlabeled_train_faces(run_project, strategy, expected):
    items = build_queue(run_project, strategy=strategy, limit=10)
    if expected is None:
        assert face_ids(items)[0] == 2 and sorted(face_ids(items)) == [1, 2, 3, 4]
    else:
        assert face_ids(items) == expected
    assert [item.rank for item in items] == [1, 2, 3, 4]


def test_reasons_name_the_classes_levels_and_threshold(run_project):
    items = {item.face_id: item for item in build_queue(run_project, strategy="margin", limit=10)}
    assert items[2].reason == "margin 0.01 fear/surprise; text level says disgust; 0.02 under the fear threshold"
    assert items[3].reason == (
        "margin 0.20 sadness/neutral; text and instance levels say neutral; 0.05 under the sadness threshold"
    )
    assert items[1].reason == "margin 0.88 happiness/surprise"  # over its threshold: not a reason
    assert (items[2].pseudo_label, items[2].runner_up, items[2].threshold) == ("fear", "surprise", 0.42)
    assert items[2].levels == {"semantic": "fear", "text": "disgust", "instance": "fear"}
    assert items[4].levels == {"semantic": "anger", "text": "anger"}  # no instance level for face 4
    near = build_queue(run_project, strategy="near_threshold", limit=10)
    assert near[0].reason.startswith("0.02 under the fear threshold; margin 0.01 fear/surprise")
    assert near[-1].reason == "0.10 over the happiness threshold; margin 0.88 happiness/surprise"
    assert near[0].score == pytest.approx(0.02)
    js = build_queue(run_project, strategy="disagreement", limit=1)[0]
    assert js.face_id == 3 and js.reason.startswith("levels disagree (JS 0.80); margin 0.20 sadness/neutral")
    assert js.score == pytest.approx(reference_js(*FACES[2][3:6]), abs=1e-6)
    diverse = build_queue(run_project, strategy="diversity", limit=2)
    assert diverse[0].reason.startswith("spread pick: the least sure of the pool; margin 0.01 fear/surprise")
    assert diverse[1].reason.startswith("spread pick, 1.00 from the nearest earlier pick")
    badge = build_queue(run_project, strategy="badge", limit=2)
    assert badge[0].reason.startswith("gradient pick: the longest gradient embedding; margin 0.01 fear/surprise")
    assert badge[1].reason.startswith("gradient pick, ") and "from the nearest earlier pick" in badge[1].reason
    assert badge[0].score > badge[1].score > 0


def test_random_is_seeded_and_reproducible(run_project):
    orders = {seed: face_ids(build_queue(run_project, strategy="random", limit=10, seed=seed)) for seed in range(6)}
    assert all(sorted(order) == [1, 2, 3, 4] for order in orders.values())
    assert face_ids(build_queue(run_project, strategy="random", limit=10, seed=3)) == orders[3]
    assert len({tuple(order) for order in orders.values()}) > 1
    assert build_queue(run_project, strategy="random", limit=1, seed=3)[0].reason.startswith("random pick (seed 3)")


def test_filters_limit_split_pseudo_label_pair_and_label_state(run_project):
    assert face_ids(build_queue(run_project, limit=2)) == [2, 3]
    assert face_ids(build_queue(run_project, filters=QueueFilters(pseudo_label="afraid"))) == [2]
    assert face_ids(build_queue(run_project, filters=QueueFilters(pair=("surprise", "fear")))) == [2]
    assert face_ids(build_queue(run_project, filters=QueueFilters(pair=("disgust", "anger")))) == [4]
    assert face_ids(build_queue(run_project, filters=QueueFilters(labels="labeled"))) == [5]
    assert face_ids(build_queue(run_project, filters=QueueFilters(labels="all"))) == [5, 2, 3, 4, 1]
    assert face_ids(build_queue(run_project, split="val")) == [6]
    assert face_ids(build_queue(run_project, split=None, filters=QueueFilters(labels="all"))) == [5, 2, 6, 3, 4, 1]
    assert build_queue(run_project, filters=QueueFilters(labels="corrected")) == []
    # A set of faces (the studio's map selection) narrows the candidates before the limit applies.
    assert face_ids(build_queue(run_project, limit=2, filters=QueueFilters(face_ids=frozenset({1, 3, 5})))) == [3, 1]
    assert build_queue(run_project, filters=QueueFilters(face_ids=frozenset())) == []
    labeled = build_queue(run_project, filters=QueueFilters(labels="labeled"))[0]
    assert labeled.label == "fear"


def test_queue_errors_are_clear(run_project, tmp_path):
    with pytest.raises(QueueError, match="unknown strategy 'smart'; choose one of least_confidence"):
        build_queue(run_project, strategy="smart")
    with pytest.raises(QueueError, match="there is no run 7"):
        build_queue(run_project, run_id=7)
    with pytest.raises(QueueError, match="unknown label 'joyful'"):
        build_queue(run_project, filters=QueueFilters(pseudo_label="joyful"))
    with pytest.raises(QueueError, match="two different classes"):
        build_queue(run_project, filters=QueueFilters(pair=("fear", "afraid")))
    with Project.create(tmp_path / "empty") as empty, pytest.raises(QueueError, match="no finished run"):
        build_queue(empty)
    with make_run_project(tmp_path / "flat", levels=False, embeddings=False) as flat:
        with pytest.raises(
            QueueError,
            match="at least two of the semantic, text and instance levels; run 1 stored no per-level probabilities",
        ):
            build_queue(flat, strategy="disagreement")
        for needs_embeddings in ("diversity", "badge", "typical_margin"):
            with pytest.raises(QueueError, match=f"no embeddings.*the {needs_embeddings} strategy needs them"):
                build_queue(flat, strategy=needs_embeddings)


def test_near_threshold_falls_back_on_the_passed_flags(tmp_path):
    with make_run_project(tmp_path / "p", thresholds=None) as project:
        items = build_queue(project, strategy="near_threshold", limit=10)
    # Not passed: fear 0.40, sadness 0.55, anger 0.70 -> most confident first; then passed: happiness.
    assert face_ids(items) == [4, 3, 2, 1]
    assert items[0].reason.startswith("below the anger threshold (confidence 0.70)")
    assert items[0].threshold is None


def test_near_threshold_warns_only_under_high_thresholds(run_project, tmp_path):
    items = build_queue(run_project, strategy="near_threshold", limit=10)
    assert queue_advice("near_threshold", items) is None  # thresholds 0.42-0.8
    with make_run_project(tmp_path / "high", thresholds={name: 0.95 for name in NAMES}) as project:
        items = build_queue(project, strategy="near_threshold", limit=10)
        advice = queue_advice("near_threshold", items)
        assert advice.headline == "high thresholds: try margin" and "thresholds are high (0.95)" in advice.detail
        assert queue_advice("margin", build_queue(project, strategy="margin", limit=10)) is None


# -- commands ------------------------------------------------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_queue_json_from_a_real_process(run_project):
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "queue", str(run_project.root), "--limit", "2", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == 0, proc.stderr
    items = json.loads(proc.stdout)
    assert [item["face_id"] for item in items] == [2, 3]
    assert items[0]["reason"].startswith("margin 0.01 fear/surprise") and items[0]["run_id"] == 1


def test_cli_queue_table_and_errors(run_project, capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "queue", run_project.root, "--strategy", "near_threshold", "--pair", "fear,surprise"
    )
    assert code == 0 and "Run 1, near_threshold: 1 face(s)" in out and "0.02 under the fear threshold" in out
    assert "note:" not in err
    with make_run_project(tmp_path / "high", thresholds={name: 0.95 for name in NAMES}) as project:
        code, _, err = run_cli(capsys, "queue", project.root, "--strategy", "near_threshold")
    assert code == 0 and "note: this run's thresholds are high (0.95)" in err and "margin" in err
    code, _, err = run_cli(capsys, "queue", run_project.root, "--pseudo-label", "joyful")
    assert code == 2 and "unknown label 'joyful'" in err
    Project.create(tmp_path / "empty").close()
    code, _, err = run_cli(capsys, "queue", tmp_path / "empty")
    assert code == 2 and "no finished run" in err
    code, _, err = run_cli(capsys, "queue", tmp_path / "nowhere")
    assert code == 3 and "is not a project" in err


def test_cli_label_undo_redo_history(run_project, capsys):
    root = run_project.root
    code, out, _ = run_cli(capsys, "label", root, 2, "afraid", "--annotator", "ana")
    assert code == 0 and "face 2: unlabeled -> fear" in out
    code, out, _ = run_cli(capsys, "label", root, 2, "fear", "--annotator", "ana")
    assert code == 0 and "Nothing changed" in out
    code, out, _ = run_cli(capsys, "label", root, 3, "accept", "--annotator", "ana")
    assert code == 0 and "face 3: unlabeled -> sadness" in out
    code, out, _ = run_cli(capsys, "label", root, "4,5", "disgust", "--annotator", "ben", "--include-labeled")
    assert code == 0 and "face 5: fear -> disgust" in out
    assert face_ids(build_queue(run_project, limit=10)) == [1]  # the others are labeled now

    code, out, _ = run_cli(capsys, "undo", root)  # the bulk step: both faces at once
    assert code == 0 and "face 5: disgust -> fear" in out and "face 4: disgust -> unlabeled" in out
    code, out, _ = run_cli(capsys, "undo", root, "--annotator", "ana")
    assert code == 0 and "face 3: sadness -> unlabeled" in out
    code, out, _ = run_cli(capsys, "redo", root)
    assert code == 0 and "face 3: unlabeled -> sadness" in out
    code, out, _ = run_cli(capsys, "history", root, "--json")
    entries = json.loads(out)
    assert [(e["face_id"], e["new_label"], e["undone_at"] is None) for e in entries] == [
        (5, "disgust", False),
        (4, "disgust", False),
        (3, "sadness", True),
        (2, "fear", True),
    ]
    assert entries[2]["suggestion"] == "sadness" and entries[2]["run_id"] == 1
    assert entries[3]["suggestion"] == "fear"  # the CLI records the latest run's suggestion
    code, out, _ = run_cli(capsys, "history", root)
    assert code == 0 and "face 5" in out and "[undone]" in out

    code, _, err = run_cli(capsys, "label", root, 99, "fear")
    assert code == 2 and "there is no face 99" in err
    code, _, err = run_cli(capsys, "label", root, 2, "joyful")
    assert code == 2 and "unknown label 'joyful'; use one of: surprise, fear, disgust" in err
    with pytest.raises(SystemExit) as exited:  # argparse refuses a face id that is not a number
        run_cli(capsys, "label", root, "x", "fear")
    assert exited.value.code == 2 and "expected face ids like 12" in capsys.readouterr().err
    code, out, _ = run_cli(capsys, "label", root, 2, "none", "--annotator", "ana")
    assert code == 0 and "face 2: fear -> unlabeled" in out
    for _ in range(3):
        run_cli(capsys, "undo", root, "--annotator", "ana")
    code, _, err = run_cli(capsys, "undo", root, "--annotator", "ana")
    assert code == 1 and "nothing to undo by ana" in err
