"""LEAF (seeds/001) and DTA-SNL (seeds/002) on the shared trainer: their modules on hand-made
tensors, that every flag changes the computation, that LEAF's gates learn, and that the
spatial modules run where feature maps exist (fine-tune mode) and are refused where not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.ssl.leaf import (
    GatedExperts,
    category_level_loss,
    certainty,
    load_balancing_loss,
    positive_sets,
    supervised_contrastive_loss,
    view_consistency_loss,
)
from core.ssl.spatial import LocalAttentionPool, SpatialModeError, SpatialOptions, drop_regions, spatial_options
from core.training.loop import LoopConfig
from core.training.settings import TrainSettings
from tests.test_ssl import C, run_step


def test_positive_set_covers_the_cumulative_mass_with_the_fewest_top_classes():
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.97, 0.01, 0.01, 0.01], [0.25, 0.25, 0.25, 0.25]])
    sets = positive_sets(probs, cumulative=0.8)
    assert sets[0].tolist() == [True, True, False, False]  # 0.5 + 0.3 reaches 0.8
    assert sets[1].tolist() == [True, False, False, False]  # a sure prediction is its own set
    assert sets[2].sum() == 4  # flat: every class stays possible
    shuffled = probs[:, [2, 0, 3, 1]]
    assert positive_sets(shuffled, 0.8)[0].tolist() == [False, True, False, True], "follows the classes, not positions"


def test_category_level_loss_raises_the_positive_set_and_weighs_by_certainty():
    probs = torch.tensor([[0.6, 0.3, 0.05, 0.05], [0.25, 0.25, 0.25, 0.25]])
    logits = torch.zeros(2, 4, requires_grad=True)
    loss = category_level_loss(logits, probs, torch.tensor([True, True]), cumulative=0.8)
    loss.backward()
    assert loss.item() > 0
    assert logits.grad[0, 0] < 0 and logits.grad[0, 1] < 0, "positive classes are pushed up"
    assert logits.grad[0, 2] > 0 and logits.grad[0, 3] > 0, "negative classes are pushed down"
    assert logits.grad[1].abs().sum() == 0, "a flat prediction carries no certainty, so no weight"
    assert certainty(probs[1:]).item() == pytest.approx(0.0, abs=1e-6)
    none = category_level_loss(torch.zeros(2, 4), probs, torch.tensor([False, False]), 0.8)
    assert none.item() == 0


def test_load_balancing_is_one_when_even_and_k_when_collapsed():
    even = torch.eye(4).repeat(8, 1)  # each expert takes a quarter of the faces
    assert load_balancing_loss(even).item() == pytest.approx(1.0)
    collapsed = torch.zeros(32, 4)
    collapsed[:, 2] = 1.0
    assert load_balancing_loss(collapsed).item() == pytest.approx(4.0)


def test_supervised_contrastive_prefers_same_class_neighbours():
    same = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    crossed = torch.tensor([0, 1, 0, 1])
    assert supervised_contrastive_loss(same, labels) < supervised_contrastive_loss(same, crossed)
    assert supervised_contrastive_loss(same, torch.tensor([0, 1, 2, -1])).item() == 0, "no positive pairs"


def test_consistency_pulls_only_the_strong_view():
    target = torch.tensor([[0.9, 0.1]], requires_grad=True)
    logits = torch.zeros(1, 2, requires_grad=True)
    view_consistency_loss(target, logits).backward()
    assert target.grad is None and logits.grad[0, 0] < 0


def test_gated_experts_are_distinct_and_every_part_gets_gradient():
    torch.manual_seed(0)
    module = GatedExperts(16, relevant=2, agnostic=2)
    assert len({id(e) for e in module.experts}) == 4
    assert not torch.equal(module.experts[0][0].weight, module.experts[1][0].weight), "not one shared module"
    out, gates, decoupling = module(torch.randn(8, 16))
    assert gates.shape == (8, 4) and torch.allclose(gates.sum(1), torch.ones(8))
    (out.pow(2).mean() + load_balancing_loss(gates) + decoupling.mean()).backward()
    assert module.gate.weight.grad.abs().sum() > 0, "the gate receives gradient"
    assert all(e[0].weight.grad.abs().sum() > 0 for e in module.experts)


def test_leaf_gates_learn_to_differ_between_faces():
    from core.training.head import build_head_trainer

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(C, 32)) * 2
    labels_all = np.arange(210) % C
    features = (centers[labels_all][:, None, :] + rng.normal(size=(210, 4, 32))).astype(np.float16)
    labels = np.where(np.arange(210) < 70, labels_all, -1)
    text = F.normalize(torch.randn(C, 16), dim=1)
    settings = TrainSettings(algorithm="leaf", loop=LoopConfig(steps=150, batch_size=16, lr=3e-3))
    trainer = build_head_trainer(features, labels, text, settings, torch.device("cpu"))
    head = trainer.model
    x = torch.from_numpy(features[:, 0]).float()
    head.eval()
    with torch.no_grad():
        before = head(x).aux["gates_semantic"].clone()
    trainer.run()
    head.eval()
    with torch.no_grad():
        after = head(x).aux
    for key in ("gates_semantic", "gates_instance"):
        spread = after[key].std(dim=0).mean().item()
        assert spread > 2 * before.std(dim=0).mean().item() and spread > 1e-3, f"{key} stayed flat"
    assert not torch.allclose(after["gates_semantic"], before, atol=1e-3)


@pytest.mark.parametrize(
    "algorithm,switch",
    [
        ("leaf", {"leaf_category": False}),
        ("leaf", {"leaf_consistency": False}),
        ("leaf", {"leaf_contrast": False}),
        ("leaf", {"leaf_semantic_experts": False}),
        ("leaf", {"leaf_instance_experts": False}),
        ("leaf", {"leaf_agnostic_experts": 0}),
        ("leaf", {"leaf_cumulative": 0.5}),
        ("leaf", {"lambda_balance": 0.5}),
        ("leaf", {"teacher_pseudo_labels": False}),
        ("fixmatch", {"leaf_modules": True}),
        ("sitfer", {"leaf_modules": True}),
        ("dta-snl", {"negative_learning": False}),
        ("dta-snl", {"dynamic_threshold": False}),
        ("dta-snl", {"teacher_pseudo_labels": False}),
    ],
)
def test_every_leaf_and_dta_snl_flag_changes_the_computation(algorithm, switch):
    _base_logs, base_loss, base_fused = run_step(algorithm)
    _logs, loss, fused = run_step(algorithm, **switch)
    assert not torch.isclose(base_loss, loss) or not torch.allclose(base_fused, fused), f"{switch} changed nothing"


def test_leaf_modules_add_their_terms_to_fixmatch():
    plain, _, _ = run_step("fixmatch")
    leafy, _, _ = run_step("fixmatch", leaf_modules=True)
    assert "loss_category" not in plain
    assert {"loss_category", "loss_consistency", "loss_contrast", "loss_balance_semantic", "loss_decoupling"} <= set(
        leafy
    )


def test_dta_snl_defaults_resolve_by_mode():
    head = TrainSettings(algorithm="dta-snl")
    assert head.balanced_sampling() and not head.spatial().active, "head mode: no feature maps, modules off"
    tune = TrainSettings(algorithm="dta-snl", mode="finetune")
    assert tune.spatial().local_attention and tune.spatial().region_dropout > 0
    assert not TrainSettings(algorithm="fixmatch", mode="finetune").spatial().active
    assert not TrainSettings(algorithm="dta-snl", loop=LoopConfig(balanced_sampling=False)).balanced_sampling()
    with pytest.raises(SpatialModeError, match="--mode finetune"):
        spatial_options(True, None, 2, True, "head")
    bad = TrainSettings(algorithm="dta-snl")
    bad.method.region_dropout = 0.3
    with pytest.raises(ValueError, match="head mode"):
        bad.validate()


def test_region_dropout_drops_cells_never_all_and_keeps_the_expected_sum():
    torch.manual_seed(0)
    fmap = torch.ones(500, 3, 6, 6)
    dropped = drop_regions(fmap, probability=0.5, grid=2)
    per_face = dropped.sum(dim=(1, 2, 3))
    assert (per_face > 0).all(), "never every region of a face"
    cells = dropped[:, 0, ::3, ::3]  # one value per 3x3 region
    assert ((cells == 0).float().mean() - 0.5).abs() < 0.1
    assert per_face.mean().item() == pytest.approx(fmap[0].sum().item(), rel=0.1)


def test_local_attention_pool_learns_and_dropout_is_training_only():
    pool = LocalAttentionPool(8, SpatialOptions(local_attention=True, region_dropout=0.5, region_grid=2))
    fmap = torch.randn(4, 8, 6, 6)
    pool.eval()
    assert torch.equal(pool(fmap), pool(fmap)), "no dropout at inference"
    pool.train()
    out = pool(fmap)
    assert out.shape == (4, 8)
    out.sum().backward()
    assert pool.attention[0].weight.grad.abs().sum() > 0


def test_dta_snl_finetune_trains_its_spatial_modules(tmp_path):
    import io

    from core.ingest.demo import DemoSettings, create_demo_project
    from core.ssl.algorithms import MethodConfig
    from core.training.checkpoints import load_checkpoint
    from core.training.events import JsonEvents
    from core.training.worker import train

    root = tmp_path / "demo"
    project, _ = create_demo_project(
        root, DemoSettings(train_per_class=6, val_per_class=2, labeled_per_class=3, seed=1)
    )
    settings = TrainSettings(
        algorithm="dta-snl",
        encoder="tiny",
        mode="finetune",
        projection="none",
        loader_workers=0,
        method=MethodConfig(),
        loop=LoopConfig(steps=6, batch_size=8, eval_every=3, log_every=3, checkpoint_every=3),
    )
    outcome = train(project, settings, JsonEvents(io.StringIO()))
    assert outcome.status == "finished"
    state = load_checkpoint(project.cache_dir("checkpoints") / f"run_{outcome.run_id}.pt")
    project.close()
    assert any(k.startswith("spatial.attention") for k in state["model"]), "the attention module is in the model"


def test_fine_tune_balanced_sampling_draws_classes_evenly_without_drawing_everything_up_front():
    from itertools import islice

    from core.training.finetune import EndlessWeightedSampler

    labels = np.array([0] * 90 + [1] * 10)
    weights = torch.as_tensor(1.0 / np.bincount(labels)[labels], dtype=torch.double)
    draws = list(islice(iter(EndlessWeightedSampler(weights, torch.Generator().manual_seed(0))), 20000))
    share_rare = float(np.mean(labels[draws] == 1))
    assert abs(share_rare - 0.5) < 0.03, share_rare
