"""The method's parts on hand-made tensors: levels, memory bank, fusion, thresholds, losses,
and that every switch of sitfer changes the computation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from core.ssl.algorithms import Batch, MethodConfig, create_algorithm
from core.ssl.fusion import fuse
from core.ssl.heads import ExpressionHead
from core.ssl.levels import MemoryBank, text_probs
from core.ssl.losses import masked_cross_entropy, negative_learning_loss
from core.ssl.thresholds import DynamicThresholds, FixedThreshold, passes

C = 7


def unit(x):
    return F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def naive_class_similarity(queries, feats, labels, top_k, own=None):
    """The bank's per-class top-k mean by a plain loop over entries: the reference (-1 for a class
    without entries; `own`: each query's own slot, left out)."""
    out = torch.full((len(queries), C), -1.0)
    for b in range(len(queries)):
        for c in range(C):
            members = [
                float(queries[b] @ feats[m])
                for m in range(len(feats))
                if labels[m] == c and (own is None or m != own[b])
            ]
            if members:
                out[b, c] = torch.tensor(sorted(members, reverse=True)[:top_k]).mean()
    return out


def test_bank_top_k_similarity_per_class_and_self_exclusion():
    bank = MemoryBank(size=4, dim=2, num_classes=3, top_k=2)
    bank.update(torch.tensor([0, 1, 2, 3]), unit([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]]), torch.tensor([0, 0, 1, -1]))
    query = unit([[1, 0]])
    sims = bank.class_similarity(query)
    assert sims[0, 0].item() == pytest.approx((1.0 + 0.8) / 2)  # top-2 mean of class 0
    assert sims[0, 1].item() == pytest.approx(0.0)  # class 1's only entry, orthogonal
    assert sims[0, 2].item() == -1.0  # empty class; slot 3 (label -1) is not in the bank
    excluded = bank.class_similarity(query, exclude=torch.tensor([0]))
    assert excluded[0, 0].item() == pytest.approx(0.8), "a face never votes for itself"
    probs = bank.probs(query, tau=0.1)
    assert probs.sum().item() == pytest.approx(1.0) and probs.argmax().item() == 0


def test_bank_is_one_matrix_product_and_matches_a_naive_loop():
    torch.manual_seed(0)
    bank = MemoryBank(size=600, dim=64, num_classes=C, top_k=5)
    feats = F.normalize(torch.randn(600, 64), dim=1)
    labels = torch.randint(-1, C, (600,))
    bank.update(torch.arange(600), feats, labels)
    queries = F.normalize(torch.randn(20, 64), dim=1)
    fast = bank.class_similarity(queries)
    assert torch.allclose(fast, naive_class_similarity(queries, feats, labels, top_k=5), atol=1e-5)


def test_fusion_renormalises_the_present_levels():
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0]])
    assert torch.allclose(fuse(a, b, None, (1, 1, 1)), torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(fuse(a, b, None, (3, 1, 1)), torch.tensor([[0.75, 0.25]]))
    assert torch.allclose(fuse(None, None, b, (1, 1, 2)), b)
    with pytest.raises(ValueError):
        fuse(None, None, None, (1, 1, 1))


def test_text_level_prefers_the_closest_class_text():
    class_text = unit(torch.eye(C))
    probs = text_probs(unit([[0, 0, 1, 0, 0, 0, 0]]), class_text, tau=0.1)
    assert probs.argmax().item() == 2 and probs[0, 2] > 0.99


def test_dynamic_thresholds_follow_confidence_with_floor_and_ceiling():
    dta = DynamicThresholds(C, momentum=0.5, floor=0.3, ceiling=0.9)
    assert torch.all(dta.thresholds() == 0.3), "start at the floor"
    confident = torch.full((32, C), 0.0)
    confident[:, 0] = 1.0  # every face sure of class 0
    for _ in range(20):
        dta.update(confident)
    th = dta.thresholds()
    assert th[0].item() == pytest.approx(0.9), "capped at the ceiling"
    assert torch.all(th[1:] == 0.3), "rare classes get the floor, so they can still pass"
    pseudo, _conf, mask = passes(torch.tensor([[0.35, 0.65] + [0.0] * 5, [0.85, 0.15] + [0.0] * 5]), th)
    assert pseudo.tolist() == [1, 0] and mask.tolist() == [True, False]
    assert torch.all(FixedThreshold(C, 0.95).thresholds() == 0.95)


def test_losses():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    targets = torch.tensor([0, 0])
    full = masked_cross_entropy(logits, targets, torch.tensor([True, True]))
    half = masked_cross_entropy(logits, targets, torch.tensor([True, False]))
    assert half < full and half.item() == pytest.approx(F.cross_entropy(logits[:1], targets[:1]).item() / 2)
    # SNL pushes down the classes the fused prediction rules out, only for faces below threshold.
    fused = torch.tensor([[0.98, 0.02], [0.5, 0.5]])
    strong = torch.tensor([[0.0, 2.0], [0.0, 2.0]], requires_grad=True)
    loss = negative_learning_loss(strong, fused, torch.tensor([True, True]), gamma=0.05)
    loss.backward()
    assert loss.item() > 0 and strong.grad[0, 1] > 0 and strong.grad[1].abs().sum() == 0
    assert negative_learning_loss(strong, fused, torch.tensor([False, False]), 0.05).item() == 0


def make_batch(n_l=8, n_u=16, dim=32):
    g = torch.Generator().manual_seed(1)
    return Batch(
        torch.randn(n_l, dim, generator=g),
        torch.arange(n_l) % C,
        torch.arange(n_l),
        torch.randn(n_u, dim, generator=g),
        torch.randn(n_u, dim, generator=g),
        torch.arange(n_l, n_l + n_u),
        x_uw_alt=torch.randn(n_u, dim, generator=g),
    )


def run_step(algorithm_name: str, step: int = 0, **overrides):
    """One training step from a fixed start; returns (logs, loss, fused probabilities of the weak view)."""
    torch.manual_seed(0)
    # Settings under which every part is active at step 0: dynamic thresholds that follow the
    # batch at once, and an SNL gamma high enough to find complementary classes in a random model.
    config = MethodConfig(
        **{
            "instance_warmup": 0,
            "dynamic_threshold": True,
            "dta_momentum": 0.0,
            "dta_floor": 0.01,
            "snl_gamma": 0.2,
            "threshold": 0.9,
            **overrides,
        }
    )
    text = F.normalize(torch.randn(C, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    algorithm = create_algorithm(
        algorithm_name, config, num_classes=C, class_text=text, bank_size=24, embed_dim=64, device=torch.device("cpu")
    )
    model = algorithm.build_head(32, 16, 64).eval()  # no dropout: only the switch differs
    teacher = copy.deepcopy(model)
    with torch.no_grad():  # a teacher that differs from the student, as an EMA does mid-run
        for p in teacher.parameters():
            p.mul_(0.9)
    algorithm.teacher = teacher
    batch = make_batch()
    result = algorithm.train_step(model, batch, step)
    result.loss.backward()
    fused = algorithm.level_probs(model(batch.x_uw), step, exclude=batch.idx_u).fused.detach()
    return result.logs, result.loss.detach(), fused


@pytest.mark.parametrize("name", ["supervised", "fixmatch", "sitfer", "leaf", "dta-snl"])
def test_each_algorithm_gives_a_finite_loss_with_gradients(name):
    logs, loss, _fused = run_step(name)
    assert torch.isfinite(loss) and logs["loss_sup"] > 0


@pytest.mark.parametrize(
    "switch",
    [
        {"use_text": False},
        {"use_instance": False},
        {"use_semantic": False},
        {"dynamic_threshold": False},
        {"negative_learning": False},
        {"weights": (1.0, 2.0, 0.5)},
        {"teacher_pseudo_labels": False},
        {"flip_ensemble": False},
        {"soft_weighting": True},
    ],
)
def test_every_sitfer_switch_changes_the_computation(switch):
    base_logs, base_loss, base_fused = run_step("sitfer")
    _logs, loss, fused = run_step("sitfer", **switch)
    assert base_logs["mask_rate"] > 0, "the base setting must let pseudo-labels pass"
    assert not torch.isclose(base_loss, loss) or not torch.allclose(base_fused, fused), f"{switch} changed nothing"


def test_the_trainers_registry_is_keyed_by_the_algorithm_specs():
    """One torch factory per spec (core/ssl/spec.py), in its order; a class without a spec, a spec
    without a class or a name twice is refused when the registry is built."""
    from core.ssl.algorithms import ALGORITHMS, FixMatch, registry
    from core.ssl.spec import ALGORITHM_NAMES

    assert tuple(ALGORITHMS) == ALGORITHM_NAMES
    assert all(factory.name == name for name, factory in ALGORITHMS.items())

    class Unspecified(FixMatch):
        name = "no-such-algorithm"

    with pytest.raises(ValueError, match=r"no spec in core/ssl/spec\.py: no-such-algorithm"):
        registry(*ALGORITHMS.values(), Unspecified)
    with pytest.raises(ValueError, match="no algorithm class: sitfer"):
        registry(*(factory for name, factory in ALGORITHMS.items() if name != "sitfer"))
    with pytest.raises(ValueError, match="registered twice: fixmatch"):
        registry(*ALGORITHMS.values(), FixMatch)
    with pytest.raises(ValueError, match="unknown algorithm 'no-such-algorithm'; choose one of supervised"):
        create_algorithm("no-such-algorithm", MethodConfig())


def test_dynamic_thresholds_are_the_algorithms_default_unless_asked_for():
    """sitfer's default is the fixed threshold its dev split chose; DTA-SNL is built on DTA; an
    explicit setting wins either way."""
    text = F.normalize(torch.randn(C, 16), dim=1)

    def threshold_kind(name, **overrides):
        algorithm = create_algorithm(
            name,
            MethodConfig(**overrides),
            num_classes=C,
            class_text=text,
            bank_size=4,
            embed_dim=8,
            device=torch.device("cpu"),
        )
        return type(algorithm.threshold)

    assert threshold_kind("sitfer") is FixedThreshold
    assert threshold_kind("sitfer", dynamic_threshold=True) is DynamicThresholds
    assert threshold_kind("dta-snl") is DynamicThresholds
    assert threshold_kind("dta-snl", dynamic_threshold=False) is FixedThreshold
    assert threshold_kind("fixmatch") is FixedThreshold


def test_soft_weighting_keeps_passed_faces_whole_and_fades_the_rest():
    algorithm = create_algorithm(
        "sitfer",
        MethodConfig(soft_weighting=True, dynamic_threshold=False, threshold=0.8),
        num_classes=C,
        class_text=F.normalize(torch.randn(C, 16), dim=1),
        bank_size=4,
        embed_dim=8,
        device=torch.device("cpu"),
    )
    confidence = torch.tensor([0.9, 0.8, 0.7, 0.3])
    pseudo = torch.zeros(4, dtype=torch.long)
    weights = algorithm._pseudo_weights(confidence, pseudo, confidence >= 0.8)
    assert weights[:2].tolist() == [1.0, 1.0]
    assert 1.0 > weights[2].item() > weights[3].item() > 0.0, "further under the threshold weighs less"
    hard = create_algorithm(
        "sitfer",
        MethodConfig(dynamic_threshold=False, threshold=0.8),
        num_classes=C,
        class_text=F.normalize(torch.randn(C, 16), dim=1),
        bank_size=4,
        embed_dim=8,
        device=torch.device("cpu"),
    )
    assert hard._pseudo_weights(confidence, pseudo, confidence >= 0.8).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_instance_level_joins_after_warmup_only():
    text = F.normalize(torch.randn(C, 16), dim=1)
    algorithm = create_algorithm(
        "sitfer",
        MethodConfig(instance_warmup=100),
        num_classes=C,
        class_text=text,
        bank_size=24,
        embed_dim=64,
        device=torch.device("cpu"),
    )
    model = ExpressionHead(32, C, 16, hidden=64)
    out = model(torch.randn(4, 32))
    assert algorithm.level_probs(out, step=10).instance is None
    algorithm.train_step(model, make_batch(), 0)  # labeled faces enter the bank at once
    assert algorithm.level_probs(out, step=100).instance is not None


def test_bad_method_settings_are_refused_with_the_name():
    for bad, word in (
        (dict(text_tau=0), "text_tau"),
        (dict(weights=(1, -1, 1)), "weights"),
        (dict(snl_gamma=1.5), "snl_gamma"),
        (dict(lambda_u=-1), "lambda_u"),
    ):
        with pytest.raises(ValueError, match=word):
            MethodConfig(**bad).validate()
    with pytest.raises(ValueError, match="unknown method setting"):
        MethodConfig.from_dict({"lambda_x": 1})
    with pytest.raises(ValueError, match="unknown algorithm"):
        create_algorithm(
            "mixmatch",
            MethodConfig(),
            num_classes=C,
            class_text=None,
            bank_size=1,
            embed_dim=4,
            device=torch.device("cpu"),
        )


def test_the_trainer_hands_its_ema_teacher_to_the_algorithm():
    import numpy as np

    from core.training.head import build_head_trainer
    from core.training.settings import TrainSettings

    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 4, 32)).astype(np.float16)
    labels = np.where(np.arange(40) < 14, np.arange(40) % C, -1)
    text = F.normalize(torch.randn(C, 16), dim=1)
    trainer = build_head_trainer(features, labels, text, TrainSettings(algorithm="sitfer"), torch.device("cpu"))
    assert trainer.algorithm.teacher is trainer.ema.module
    batch = trainer.source.next_batch(0)
    assert batch.x_uw_alt is not None and not torch.equal(batch.x_uw, batch.x_uw_alt), "the mirror is the other view"


def test_bank_by_class_view_follows_updates_and_in_place_writes():
    torch.manual_seed(1)
    bank = MemoryBank(size=300, dim=16, num_classes=C, top_k=3)
    feats = F.normalize(torch.randn(300, 16), dim=1)
    labels = torch.randint(-1, C, (300,))
    bank.update(torch.arange(300), feats, labels)
    queries = F.normalize(torch.randn(8, 16), dim=1)
    own = torch.tensor([0, 5, 17, -1, 250, 299, 3, -1])

    def naive(feats, labels):
        return naive_class_similarity(queries, feats, labels, top_k=3, own=own)

    assert torch.allclose(bank.class_similarity(queries, own), naive(feats, labels), atol=1e-5)
    bank.update(torch.tensor([5, 17]), F.normalize(torch.randn(2, 16), dim=1), torch.tensor([2, -1]))
    feats, labels = bank.features.clone(), bank.labels.clone()
    assert torch.allclose(bank.class_similarity(queries, own), naive(feats, labels), atol=1e-5)
    bank.labels[labels == 0] = -1  # written in place, as the refit's carried bank does
    labels[labels == 0] = -1
    result = bank.class_similarity(queries, own)
    assert (result[:, 0] == -1.0).all(), "a class emptied in place leaves the bank"
    assert torch.allclose(result, naive(feats, labels), atol=1e-5)
