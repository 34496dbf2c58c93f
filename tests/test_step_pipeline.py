"""What feeds a training step and what it keeps: augmentations, uint8 views normalised where the
model runs, the EMA teacher and the loss check. The faster forms (transforms built once, one
kernel per EMA update, no per-step wait for the GPU) must give exactly what the plain ones gave,
so head-mode caches rebuild bit for bit, checkpoints resume the same, and a NaN loss is never
logged or saved."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from core.training.augment import cached_views, strong_transform, strong_view, weak_transform
from core.training.loop import ModelEMA


def _face(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def _fresh_strong_view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """strong_view as it was before the transforms were shared: built anew for every call."""
    from core.training.augment import cutout

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
        augmented = strong_transform.__wrapped__(max(image.size))(image)
    return cutout(augmented, rng)


@pytest.mark.parametrize("size", [48, 61])
def test_shared_strong_transform_gives_the_views_a_fresh_one_gave(size):
    for seed in range(12):
        face = _face(seed, size)
        shared = strong_view(face, np.random.default_rng(seed))
        fresh = _fresh_strong_view(face, np.random.default_rng(seed))
        assert np.array_equal(np.asarray(shared), np.asarray(fresh)), f"seed {seed}"
    assert strong_transform(size) is strong_transform(size)


def test_shared_weak_transform_draws_from_the_global_generator_like_a_fresh_one():
    face = _face(3)
    torch.manual_seed(7)
    shared = [np.asarray(weak_transform(48)(face)) for _ in range(5)]
    torch.manual_seed(7)
    fresh = [np.asarray(weak_transform.__wrapped__(48)(face)) for _ in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(shared, fresh))
    assert not all(np.array_equal(shared[0], v) for v in shared[1:])  # it does augment


def test_cached_views_are_reproducible_per_face_and_seed():
    face = _face(1)
    first, again = cached_views(face, 17, 0, 2), cached_views(face, 17, 0, 2)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    other_face = cached_views(face, 18, 0, 2)
    assert not np.array_equal(np.asarray(first[2]), np.asarray(other_face[2]))


def _reference_ema(ema_state: dict, model_state: dict, decay: float) -> dict:
    out = {}
    for name, value in ema_state.items():
        if value.dtype.is_floating_point:
            out[name] = value.clone().mul_(decay).add_(model_state[name], alpha=1 - decay)
        else:
            out[name] = model_state[name].clone()
    return out


def test_ema_update_matches_the_per_tensor_rule_buffers_included():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.randn(2, 3, 8, 8))  # materialise the lazy layer and move the batch-norm statistics
    ema = ModelEMA(model, decay=0.9)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(2, 3, 8, 8))  # running statistics and num_batches_tracked change too
        expected = _reference_ema(copy.deepcopy(ema.module.state_dict()), model.state_dict(), 0.9)
        ema.update(model)
        for name, value in ema.module.state_dict().items():
            assert torch.equal(value, expected[name]), name
    assert int(ema.module[1].num_batches_tracked) == 4


def _old_preprocess(pre, images):
    """Preprocessor.__call__ as it was before it was split into to_uint8 and normalize."""
    from core.encoders.base import _fit_square

    arrays = [np.asarray(_fit_square(img, pre.size), dtype=np.float32) for img in images]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).div_(255.0)
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(mean).div_(std).contiguous()


def test_uint8_images_normalised_later_equal_the_one_step_preprocessing():
    from core.encoders.base import Preprocessor

    pre = Preprocessor(112, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    images = [_face(0), _face(1, 61), Image.fromarray(np.zeros((30, 70, 3), np.uint8), "RGB"), _face(2).convert("L")]
    small = pre.to_uint8(images)
    assert small.dtype == torch.uint8 and small.shape == (4, 3, 112, 112) and small.is_contiguous()
    assert torch.equal(pre.normalize(small), _old_preprocess(pre, images))
    assert torch.equal(pre(images), _old_preprocess(pre, images))
    assert pre.to_uint8([]).shape == (0, 3, 112, 112)


def test_finetune_batches_arrive_normalised_and_views_differ(tmp_path):
    from core.encoders.base import Preprocessor
    from core.training.data import FaceTable
    from core.training.finetune import ImageBatches, plain_batches

    paths = []
    for i in range(6):
        path = tmp_path / f"face {i}.png"
        _face(i).save(path)
        paths.append(path)
    faces = FaceTable(
        ids=np.arange(6),
        splits=np.array(["train"] * 6),
        labels=np.array([0, 1, -1, -1, -1, -1]),
        paths=paths,
        crop_paths=[None] * 6,
        boxes=[None] * 6,
        angles=[None] * 6,
    )
    pre = Preprocessor(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.manual_seed(0)
    source = ImageBatches(
        faces,
        np.array([0, 1]),
        np.array([0, 1]),
        np.arange(2, 6),
        np.arange(6),
        pre,
        batch_size=2,
        unlabeled_ratio=2,
        seed=0,
        device=torch.device("cpu"),
        workers=0,
    )
    batch = source.next_batch(0)
    for x in (batch.x_l, batch.x_uw, batch.x_us, batch.x_uw_alt):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert float(x.min()) >= -2.0 - 1e-6 and float(x.max()) <= 2.0 + 1e-6  # (0..1 - 0.5) / 0.25
    assert not torch.equal(batch.x_uw, batch.x_us)
    images, slots = next(plain_batches(faces, np.arange(6), np.arange(6), pre, workers=0))
    assert torch.equal(images, pre([Image.open(p).convert("RGB") for p in paths]))
    assert slots.tolist() == list(range(6))


class _ScriptedAlgorithm:
    """A one-layer 'algorithm' whose loss turns NaN from step `bad_from` on."""

    uses_unlabeled = False
    teacher = None

    def __init__(self, bad_from: int):
        self.bad_from = bad_from

    def train_step(self, model, batch, step):
        from core.ssl.algorithms import StepResult

        loss = model(batch.x_l).pow(2).mean()
        if step + 1 >= self.bad_from:
            loss = loss * float("nan")
        return StepResult(loss, {"loss_sup": loss.detach(), "mask_rate": torch.tensor(0.5)})

    def state_dict(self):
        return {}


class _Batches:
    def next_batch(self, step):
        from core.ssl.algorithms import Batch

        return Batch(torch.ones(4, 3), torch.zeros(4, dtype=torch.long), torch.arange(4))

    def state_dict(self):
        return {}


class _Recorder:
    priority = 50

    def __init__(self):
        self.steps, self.ended = [], None

    def before_run(self, trainer):
        pass

    def after_step(self, trainer, result):
        self.steps.append(trainer.step)

    def after_run(self, trainer, status):
        self.ended = status


def test_a_nan_loss_stops_the_run_before_any_hook_reads_that_step():
    from core.training.loop import LoopConfig, Trainer

    recorder = _Recorder()
    trainer = Trainer(
        torch.nn.Linear(3, 1),
        _ScriptedAlgorithm(bad_from=7),
        _Batches(),
        LoopConfig(steps=40, log_every=5, eval_every=20, checkpoint_every=20),
        torch.device("cpu"),
        [recorder],
    )
    with pytest.raises(FloatingPointError, match="between steps 6 and 10"):
        trainer.run()
    # Steps 1-9 ran their hooks; step 10, the first the hooks log, never reached them, nor did after_run.
    assert recorder.steps == list(range(1, 10)) and recorder.ended is None


def test_a_finite_run_ends_normally_and_metrics_average_device_logs(tmp_path):
    from core.training.hooks import MetricsHook
    from core.training.loop import LoopConfig, Trainer

    class Events:
        def __init__(self):
            self.sent = []

        def emit(self, kind, **fields):
            self.sent.append((kind, fields))

    class FakeAlgorithm(_ScriptedAlgorithm):
        def thresholds(self):
            return torch.full((7,), 0.95)

    events = Events()
    hook = MetricsHook(project=None, run_id=1, events=events)
    written = []
    import core.training.hooks as hooks_module

    original = hooks_module.write_metrics
    hooks_module.write_metrics = lambda project, run_id, step, values: written.append((step, values))
    try:
        trainer = Trainer(
            torch.nn.Linear(3, 1),
            FakeAlgorithm(bad_from=10**9),
            _Batches(),
            LoopConfig(steps=10, log_every=5),
            torch.device("cpu"),
            [hook],
        )
        assert trainer.run() == "finished"
    finally:
        hooks_module.write_metrics = original
    assert [step for step, _ in written] == [5, 10]
    values = written[0][1]
    assert isinstance(values["mask_rate"], float) and values["mask_rate"] == pytest.approx(0.5)
    assert isinstance(values["loss_sup"], float) and values["loss_sup"] > 0
    assert events.sent[-1][0] == "metrics"


def test_the_preprocessor_pickles_without_its_device_constants():
    import pickle

    from core.encoders.base import Preprocessor

    pre = Preprocessor(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    first = pre.normalize(pre.to_uint8([_face(0, 16)]))
    assert pre._constants  # made on first use ...
    copy_ = pickle.loads(pickle.dumps(pre))
    assert copy_._constants == {}  # ... and not sent to worker processes
    assert torch.equal(copy_.normalize(copy_.to_uint8([_face(0, 16)])), first)
