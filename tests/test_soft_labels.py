"""Soft labels (--soft-labels): every algorithm's supervised loss reads the labeled faces' vote
shares; one-hot targets give the hard loss bit for bit; a run freezes its targets at its start,
records the setting, and trains exactly as without it where there are no votes."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.classes import class_names
from core.cli import build_parser
from core.cli.train_cmds import settings_from_args, train_argv
from core.labeling import set_label
from core.ssl.algorithms import ALGORITHMS, Batch, create_algorithm
from core.ssl.config import MethodConfig
from core.ssl.losses import soft_cross_entropy
from core.store.models import Run, RunLabel
from core.store.project import Project
from core.training.batches import CachedFeatureBatches
from core.training.checkpoints import load_checkpoint
from core.training.data import load_face_table
from core.training.events import JsonEvents
from core.training.refit import refit
from core.training.settings import TrainSettings
from core.training.soft_labels import NO_VOTES, load_frozen_targets, targets_path, vote_targets
from core.training.worker import train
from tests.studio_runs import make_demo, quick_settings

NAMES = class_names()
C = len(NAMES)
FEAR, SURPRISE, HAPPINESS = NAMES.index("fear"), NAMES.index("surprise"), NAMES.index("happiness")


# -- the loss ----------------------------------------------------------------------------------------
def test_one_hot_soft_targets_give_the_hard_loss_and_gradient_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    for size in (1, 7, 64, 200):
        logits = (torch.randn(size, C, generator=generator) * 4).requires_grad_()
        labels = torch.randint(0, C, (size,), generator=generator)
        hard = F.cross_entropy(logits, labels)
        (hard_grad,) = torch.autograd.grad(hard, logits)
        soft = soft_cross_entropy(logits, labels, F.one_hot(labels, C).float())
        (soft_grad,) = torch.autograd.grad(soft, logits)
        assert torch.equal(hard, soft) and torch.equal(hard_grad, soft_grad), size
    # A split target is the cross-entropy against the class probabilities.
    targets = torch.zeros(3, C)
    targets[:, FEAR], targets[:, SURPRISE] = 2 / 3, 1 / 3
    logits = torch.randn(3, C, generator=generator)
    labels = torch.full((3,), FEAR)
    assert torch.allclose(soft_cross_entropy(logits, labels, targets), F.cross_entropy(logits, targets), atol=1e-6)
    assert not torch.allclose(soft_cross_entropy(logits, labels, targets), F.cross_entropy(logits, labels))


def _batch(seed: int, dim: int, soft: str | None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (8,), generator=g)
    batch = Batch(torch.randn(8, dim, generator=g), y, torch.arange(8))
    batch.x_uw, batch.x_us = torch.randn(24, dim, generator=g), torch.randn(24, dim, generator=g)
    batch.x_uw_alt, batch.idx_u = torch.randn(24, dim, generator=g), torch.arange(8, 32)
    if soft == "one-hot":
        batch.soft_l = F.one_hot(y, C).float()
    elif soft == "split":
        batch.soft_l = torch.full((8, C), 1.0 / C)
    return batch


def _step(name: str, soft: str | None) -> tuple[torch.Tensor, dict, list[torch.Tensor]]:
    """One train step of `name` from the same seeded start: its loss, logs and gradients."""
    dim, text_dim = 12, 6
    torch.manual_seed(0)
    class_text = F.normalize(torch.randn(C, text_dim), dim=1)
    config = MethodConfig(instance_warmup=0, threshold=0.2, dta_floor=0.2)
    algorithm = create_algorithm(
        name, config, num_classes=C, class_text=class_text, bank_size=32, embed_dim=16, device=torch.device("cpu")
    )
    head = algorithm.build_head(dim, text_dim, 16)
    result = algorithm.train_step(head, _batch(1, dim, soft), step=5)
    grads = torch.autograd.grad(result.loss, [p for p in head.parameters() if p.requires_grad], allow_unused=True)
    return result.loss.detach(), result.logs, [g for g in grads if g is not None]


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_each_algorithm_reads_the_soft_targets_and_one_hot_ones_change_nothing(name):
    hard_loss, hard_logs, hard_grads = _step(name, None)
    loss, logs, grads = _step(name, "one-hot")
    assert torch.equal(hard_loss, loss) and all(torch.equal(a, b) for a, b in zip(hard_grads, grads))
    split_loss, split_logs, _ = _step(name, "split")
    assert not torch.equal(split_loss, hard_loss)
    assert not torch.equal(split_logs["loss_sup"], hard_logs["loss_sup"])
    if "loss_text" in hard_logs:  # sitfer's text-level supervision reads them too
        assert torch.equal(logs["loss_text"], hard_logs["loss_text"])
        assert not torch.equal(split_logs["loss_text"], hard_logs["loss_text"])


def test_head_batches_carry_each_labeled_faces_target_beside_its_hard_label():
    features = np.random.default_rng(0).normal(size=(10, 3, 4)).astype(np.float16)
    labeled, labels = np.array([1, 4, 7]), np.array([FEAR, HAPPINESS, FEAR])
    soft = np.eye(C, dtype=np.float32)[labels]
    soft[0, [FEAR, SURPRISE]] = 2 / 3, 1 / 3
    cpu = torch.device("cpu")
    source = CachedFeatureBatches(features, labeled, labels, np.array([0, 2]), 16, 1, 0.1, 0, cpu, False, soft)
    batch = source.next_batch(0)
    assert batch.soft_l is not None
    for slot, hard, target in zip(batch.idx_l.tolist(), batch.y_l.tolist(), batch.soft_l):
        position = labeled.tolist().index(slot)
        assert hard == labels[position] and torch.equal(target, torch.from_numpy(soft[position]))
    plain = CachedFeatureBatches(features, labeled, labels, np.array([0, 2]), 16, 1, 0.1, 0, cpu)
    assert plain.next_batch(0).soft_l is None


# -- runs ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("soft") / "demo")


@pytest.fixture
def voted(template, tmp_path) -> tuple[Path, int, int]:
    """A copy of the demo where three annotators voted on a labeled fear face (2 fear, 1
    surprise) and two on an unlabeled face (both happiness)."""
    root = tmp_path / "voted"
    shutil.copytree(template, root)
    with Project.open(root) as project:
        with project.session() as session:
            faces = load_face_table(project, session)
        train = faces.splits == "train"
        split_face = int(faces.ids[np.flatnonzero(train & (faces.labels == FEAR))[0]])
        agreed_face = int(faces.ids[np.flatnonzero(train & (faces.labels < 0))[0]])
        for annotator, label in (("ann", "fear"), ("bob", "fear"), ("cat", "surprise")):
            set_label(project, split_face, label, annotator)
        for annotator in ("ann", "bob"):
            set_label(project, agreed_face, "happiness", annotator)
    return root, split_face, agreed_face


def _train(root: Path, settings: TrainSettings):
    stream = io.StringIO()
    with Project.open(root) as project:
        outcome = train(project, settings, JsonEvents(stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert outcome.status == "finished", events[-1]
    return outcome.run_id, [e.get("message", "") for e in events if e["event"] == "info"]


def test_a_face_with_a_two_to_one_split_gets_two_thirds_and_one_third(voted):
    root, split_face, agreed_face = voted
    with Project.open(root) as project, project.session() as session:
        found = vote_targets(session, np.array([split_face, agreed_face]), np.array([FEAR, HAPPINESS]))
    expected = np.zeros(C, dtype=np.float32)
    expected[FEAR], expected[SURPRISE] = 2 / 3, 1 / 3
    assert np.allclose(found.targets[0], expected, atol=1e-7) and found.targets[0].sum() == pytest.approx(1.0)
    assert found.targets[1][HAPPINESS] == 1.0 and found.voted == 2 and found.split.tolist() == [True, False]


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_every_algorithm_trains_on_the_votes_and_records_the_setting(voted, algorithm):
    root, split_face, _ = voted
    settings = quick_settings(algorithm, steps=4)
    settings.projection, settings.soft_labels = "none", True
    run_id, infos = _train(root, settings)
    assert any("soft labels: 1 of 15 labeled faces train on split votes" in m and "2 have votes" in m for m in infos)
    with Project.open(root) as project, project.session() as session:
        run = session.get(Run, run_id)
        assert run.config["soft_labels"] is True
        assert session.get(RunLabel, (run_id, split_face)).label == "fear", "the hard label is the consensus"
        record = json.loads(targets_path(project, run_id).read_text())
    assert list(record["targets"]) == [str(split_face)], "one-hot targets are the run labels' and not repeated"
    assert record["targets"][str(split_face)][FEAR] == pytest.approx(2 / 3)
    assert (record["labeled_faces"], record["voted_faces"]) == (15, 2)


def test_the_targets_are_frozen_at_the_start_and_a_refit_takes_todays_votes(voted):
    root, split_face, _ = voted
    settings = quick_settings("sitfer", steps=4)
    settings.soft_labels = True
    run_id, _ = _train(root, settings)
    with Project.open(root) as project:
        set_label(project, split_face, "surprise", "dan")  # 2:2 now; the run's record stays 2:1
        with project.session() as session:
            faces = load_face_table(project, session)
        labels = np.where(faces.ids == split_face, FEAR, -1)
        frozen = load_frozen_targets(project, run_id, faces, labels)
        assert frozen.targets is not None
        assert frozen.targets[faces.ids == split_face][0][FEAR] == pytest.approx(2 / 3)
        stream = io.StringIO()
        outcome = refit(project, run_id, JsonEvents(stream), steps=3)
        assert outcome.status == "finished", stream.getvalue()[-500:]
        with project.session() as session:
            assert session.get(Run, outcome.run_id).config["soft_labels"] is True, "a refit keeps its parent's choice"
        record = json.loads(targets_path(project, outcome.run_id).read_text())
        assert record["targets"][str(split_face)][FEAR] == pytest.approx(0.5)
        off = refit(project, run_id, JsonEvents(io.StringIO()), steps=3, soft_labels=False)
        assert not targets_path(project, off.run_id).exists()


def test_without_votes_soft_labels_train_exactly_as_the_hard_labels_and_say_so(template, tmp_path):
    root = tmp_path / "plain"
    shutil.copytree(template, root)
    settings = quick_settings("sitfer", steps=6)
    settings.projection = "none"
    plain, _ = _train(root, settings)
    settings.soft_labels = True
    soft, infos = _train(root, settings)
    assert NO_VOTES in infos
    with Project.open(root) as project, project.session() as session:
        states = [load_checkpoint(project.resolve_path(session.get(Run, r).checkpoint)) for r in (plain, soft)]
    assert all(torch.equal(a, b) for a, b in zip(states[0]["model"].values(), states[1]["model"].values()))


def test_fine_tune_mode_trains_on_the_votes_too(voted):
    root, _, _ = voted
    settings = quick_settings("fixmatch", steps=2)
    settings.mode, settings.loader_workers, settings.projection, settings.soft_labels = "finetune", 0, "none", True
    _run_id, infos = _train(root, settings)
    assert any(m.startswith("soft labels: 1 of 15") for m in infos)


def test_the_flag_is_a_train_and_refit_setting():
    parser = build_parser()
    settings = settings_from_args(parser.parse_args(["train", "p", "--soft-labels"]))
    assert settings.soft_labels and "--soft-labels" in train_argv("p", settings)
    assert not settings_from_args(parser.parse_args(["train", "p"])).soft_labels
    assert "--soft-labels" not in train_argv("p", TrainSettings())
    assert TrainSettings.from_dict({"algorithm": "sitfer"}).soft_labels is False, "older runs trained without it"
    assert parser.parse_args(["refit", "p", "--no-soft-labels"]).soft_labels is False
    assert parser.parse_args(["refit", "p"]).soft_labels is None
    with pytest.raises(ValueError, match="soft_labels"):
        TrainSettings(soft_labels="yes").validate()  # type: ignore[arg-type]
