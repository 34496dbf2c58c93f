"""Fine-tune mode: the encoder's image tower trains with the head on weak/strong augmented
images (flip and crop vs. RandAugment and Cutout), with an EMA teacher, bf16 autocast on CUDA
(the loop's), and DistributedDataParallel under torchrun."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from core.encoders.base import Preprocessor
from core.ingest.imageio import ImageProblem, load_face
from core.ssl.algorithms import Batch
from core.ssl.heads import ExpressionHead, HeadOutput
from core.ssl.spatial import LocalAttentionPool, SpatialOptions
from core.training.augment import random_strong_view, weak_transform
from core.training.data import FaceTable

ENCODER_LR_SCALE = 0.1  # pretrained weights move ten times slower than the new head


class FineTuneModel(nn.Module):
    """Tower and head; with `spatial` (DTA-SNL's local attention and region dropout) the head
    reads the tower's feature map pooled by it instead of the tower's own pooled features."""

    def __init__(self, tower: nn.Module, head: ExpressionHead, spatial: LocalAttentionPool | None = None):
        super().__init__()
        self.tower = tower
        self.head = head
        self.spatial = spatial

    def forward(self, images: torch.Tensor) -> HeadOutput:
        if self.spatial is not None:
            # spatial_pool built `spatial` only for a tower with forward_spatial; nn.Module's stub cannot say so
            return self.head(self.spatial(self.tower.forward_spatial(images)))  # type: ignore[operator]
        return self.head(self.tower(images))

    def param_groups(self, lr: float) -> list[dict]:
        return [
            {"params": self.tower.parameters(), "lr": lr * ENCODER_LR_SCALE},
            {"params": self.head.parameters(), "lr": lr},
        ]


class FaceImages(Dataset):
    """Faces of `rows`, each as (views..., label, bank slot). views: 'plain', 'weak', 'strong',
    each a uint8 (3,S,S) image: the consumer normalises it (Preprocessor.normalize) where the
    model runs, so worker processes, shared memory and the copy to a GPU move a quarter of the bytes."""

    def __init__(
        self,
        faces: FaceTable,
        rows: np.ndarray,
        labels: np.ndarray,
        slots: np.ndarray,
        preprocess: Preprocessor,
        views: tuple[str, ...],
    ):
        self.paths = [faces.paths[r] for r in rows]
        self.crops = [faces.crop_paths[r] for r in rows]
        self.boxes = [faces.boxes[r] for r in rows]
        self.angles = [faces.angles[r] for r in rows]
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.slots = torch.as_tensor(slots, dtype=torch.long)
        self.preprocess = preprocess
        self.views = views

    def __len__(self) -> int:
        return len(self.paths)

    def _view(self, face: Image.Image, kind: str) -> Image.Image:
        if kind == "plain":
            return face
        if kind == "weak":
            return weak_transform(max(face.size))(face)
        # torch's generator is seeded per DataLoader worker, so views differ and runs repeat.
        return random_strong_view(face, np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))))

    def __getitem__(self, i: int):
        try:
            face = load_face(self.paths[i], self.crops[i], self.boxes[i], self.angles[i])
        except ImageProblem as exc:
            raise ImageProblem(f"{self.paths[i]}: {exc}") from None
        tensors = [self.preprocess.to_uint8([self._view(face, kind)])[0] for kind in self.views]
        return (*tensors, self.labels[i], self.slots[i])


def spatial_pool(tower: nn.Module, input_size: int, options: SpatialOptions) -> LocalAttentionPool | None:
    """The feature-map pooling DTA-SNL asks for, sized to the tower's map (None when off)."""
    if not options.active:
        return None
    forward_spatial = getattr(tower, "forward_spatial", None)
    if forward_spatial is None:
        raise ValueError(
            "local attention and region dropout need a convolutional feature map; this encoder "
            "has none (use the 'offline' encoder, or --no-local-attention --region-dropout 0)"
        )
    with torch.no_grad():
        was_training = tower.training
        tower.eval()
        probe = next(tower.parameters())
        channels = forward_spatial(torch.zeros(1, 3, input_size, input_size, device=probe.device)).shape[1]
        tower.train(was_training)
    return LocalAttentionPool(channels, options)


class EndlessWeightedSampler(Sampler):
    """Indices drawn with replacement by weight, forever, a chunk at a time (torch's
    WeightedRandomSampler draws all of num_samples up front: 16 GB for an endless loader)."""

    CHUNK = 4096

    def __init__(self, weights: torch.Tensor, generator: torch.Generator):
        self.weights = weights
        self.generator = generator

    def __iter__(self):
        while True:
            yield from torch.multinomial(self.weights, self.CHUNK, replacement=True, generator=self.generator).tolist()


def _loader(
    dataset: FaceImages,
    batch_size: int,
    seed: int,
    workers: int,
    device: torch.device,
    shuffle: bool = True,
    weights: torch.Tensor | None = None,
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    sampler: Sampler | None = None
    if shuffle and weights is not None:
        sampler = EndlessWeightedSampler(weights, generator)
    elif shuffle:
        sampler = RandomSampler(dataset, replacement=True, num_samples=2**31 - 1, generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=shuffle,
        generator=generator,
        persistent_workers=workers > 0 and shuffle,
    )


class ImageBatches:
    """Endless labeled and unlabeled batches of augmented images; each rank draws its own."""

    def __init__(
        self,
        faces: FaceTable,
        labeled: np.ndarray,
        labels: np.ndarray,
        unlabeled: np.ndarray,
        slot_of: np.ndarray,
        preprocess: Preprocessor,
        batch_size: int,
        unlabeled_ratio: int,
        seed: int,
        device: torch.device,
        workers: int = 2,
        balanced: bool = False,
        soft_targets: np.ndarray | None = None,
    ):
        if len(labeled) == 0:
            raise ValueError("no labeled training faces: label some faces (or import with labels) first")
        self.device = device
        # Soft targets (labeled faces, classes) by bank slot: a batch carries its faces' slots.
        self.soft_by_slot: torch.Tensor | None = None
        if soft_targets is not None:
            slots = slot_of[labeled]
            table = np.zeros((int(slots.max()) + 1, soft_targets.shape[1]), dtype=np.float32)
            table[slots] = soft_targets
            self.soft_by_slot = torch.from_numpy(table).to(device)
        self.preprocess = preprocess
        self.steps_done = 0
        labeled_set = FaceImages(faces, labeled, labels, slot_of[labeled], preprocess, ("weak",))
        # Class-balanced: each face drawn with weight 1 / (faces of its class), so every class
        # is equally likely in a batch.
        weights = None
        if balanced:
            counts = np.bincount(labels)
            weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
        self._labeled = iter(_loader(labeled_set, batch_size, seed, workers, device, weights=weights))
        self._unlabeled = None
        if unlabeled_ratio and len(unlabeled):
            unlabeled_set = FaceImages(
                faces, unlabeled, np.full(len(unlabeled), -1), slot_of[unlabeled], preprocess, ("weak", "strong")
            )
            self._unlabeled = iter(_loader(unlabeled_set, batch_size * unlabeled_ratio, seed + 1, workers, device))

    def next_batch(self, step: int) -> Batch:
        x_l, y_l, idx_l = next(self._labeled)
        d, normalize = self.device, self.preprocess.normalize
        batch = Batch(normalize(x_l.to(d, non_blocking=True)), y_l.to(d), idx_l.to(d))
        if self.soft_by_slot is not None:
            batch.soft_l = self.soft_by_slot[batch.idx_l]
        if self._unlabeled is not None:
            x_uw, x_us, _y, idx_u = next(self._unlabeled)
            batch.x_uw, batch.x_us = normalize(x_uw.to(d, non_blocking=True)), normalize(x_us.to(d, non_blocking=True))
            batch.idx_u = idx_u.to(d)
            batch.x_uw_alt = torch.flip(batch.x_uw, dims=[-1])  # the mirrored weak view
        self.steps_done += 1
        return batch

    # Image order is not restored on resume (the loaders restart); the model, optimizer,
    # thresholds and bank are.
    def state_dict(self) -> dict:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict) -> None:
        self.steps_done = int(state.get("steps_done", 0))


def plain_batches(
    faces: FaceTable,
    rows: np.ndarray,
    slot_of: np.ndarray,
    preprocess: Preprocessor,
    batch_size: int = 128,
    workers: int = 2,
):
    """(normalised images, own bank slot) batches of the un-augmented faces, for predictions."""
    dataset = FaceImages(faces, rows, np.full(len(rows), -1), slot_of[rows], preprocess, ("plain",))
    for images, _labels, slots in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        yield preprocess.normalize(images), slots
