"""Fine-tune mode: the encoder's image tower trains with the head on weak/strong augmented
images (flip and crop vs. RandAugment and Cutout), with an EMA teacher, bf16 autocast on CUDA
(the loop's), and DistributedDataParallel under torchrun."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from core.encoders.base import Preprocessor
from core.ingest.imageio import ImageProblem, load_face
from core.ssl.algorithms import Batch
from core.ssl.heads import ExpressionHead, HeadOutput
from core.training.augment import strong_view, weak_transform
from core.training.data import FaceTable

ENCODER_LR_SCALE = 0.1  # pretrained weights move ten times slower than the new head


class FineTuneModel(nn.Module):
    def __init__(self, tower: nn.Module, head: ExpressionHead):
        super().__init__()
        self.tower = tower
        self.head = head

    def forward(self, images: torch.Tensor) -> HeadOutput:
        return self.head(self.tower(images))

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": self.tower.parameters(), "lr": lr * ENCODER_LR_SCALE},
                {"params": self.head.parameters(), "lr": lr}]


class FaceImages(Dataset):
    """Faces of `rows`, each as (views..., label, bank slot). views: 'plain', 'weak', 'strong'."""

    def __init__(self, faces: FaceTable, rows: np.ndarray, labels: np.ndarray, slots: np.ndarray,
                 preprocess: Preprocessor, views: tuple[str, ...]):
        self.paths = [faces.paths[r] for r in rows]
        self.crops = [faces.crop_paths[r] for r in rows]
        self.boxes = [faces.boxes[r] for r in rows]
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
        return strong_view(face, np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))))

    def __getitem__(self, i: int):
        try:
            face = load_face(self.paths[i], self.crops[i], self.boxes[i])
        except ImageProblem as exc:
            raise ImageProblem(f"{self.paths[i]}: {exc}") from None
        tensors = [self.preprocess([self._view(face, kind)])[0] for kind in self.views]
        return (*tensors, self.labels[i], self.slots[i])


def _loader(dataset: Dataset, batch_size: int, seed: int, workers: int, device: torch.device,
            shuffle: bool = True) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=2**31 - 1, generator=generator) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=shuffle, generator=generator,
                      persistent_workers=workers > 0 and shuffle)


class ImageBatches:
    """Endless labeled and unlabeled batches of augmented images; each rank draws its own."""

    def __init__(self, faces: FaceTable, labeled: np.ndarray, labels: np.ndarray, unlabeled: np.ndarray,
                 slot_of: np.ndarray, preprocess: Preprocessor, batch_size: int, unlabeled_ratio: int,
                 seed: int, device: torch.device, workers: int = 2):
        if len(labeled) == 0:
            raise ValueError("no labeled training faces: label some faces (or import with labels) first")
        self.device = device
        self.steps_done = 0
        labeled_set = FaceImages(faces, labeled, labels, slot_of[labeled], preprocess, ("weak",))
        self._labeled = iter(_loader(labeled_set, batch_size, seed, workers, device))
        self._unlabeled = None
        if unlabeled_ratio and len(unlabeled):
            unlabeled_set = FaceImages(faces, unlabeled, np.full(len(unlabeled), -1), slot_of[unlabeled],
                                       preprocess, ("weak", "strong"))
            self._unlabeled = iter(_loader(unlabeled_set, batch_size * unlabeled_ratio, seed + 1, workers, device))

    def next_batch(self, step: int) -> Batch:
        x_l, y_l, idx_l = next(self._labeled)
        d = self.device
        batch = Batch(x_l.to(d, non_blocking=True), y_l.to(d), idx_l.to(d))
        if self._unlabeled is not None:
            x_uw, x_us, _y, idx_u = next(self._unlabeled)
            batch.x_uw, batch.x_us, batch.idx_u = x_uw.to(d, non_blocking=True), x_us.to(d, non_blocking=True), idx_u.to(d)
            batch.x_uw_alt = torch.flip(batch.x_uw, dims=[-1])  # the mirrored weak view
        self.steps_done += 1
        return batch

    # Image order is not restored on resume (the loaders restart); the model, optimizer,
    # thresholds and bank are.
    def state_dict(self) -> dict:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict) -> None:
        self.steps_done = int(state.get("steps_done", 0))


def plain_batches(faces: FaceTable, rows: np.ndarray, slot_of: np.ndarray, preprocess: Preprocessor,
                  batch_size: int = 128, workers: int = 2):
    """(images, own bank slot) batches of the un-augmented faces, for predictions."""
    dataset = FaceImages(faces, rows, np.full(len(rows), -1), slot_of[rows], preprocess, ("plain",))
    for images, _labels, slots in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        yield images, slots
