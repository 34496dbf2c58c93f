"""Weak and strong augmentations of face images (PIL in, PIL out).

Weak: horizontal flip and a mild crop. Strong: a harder crop, flip, RandAugment and Cutout, as
FixMatch and SIT-FER use. Views for the head-mode cache are drawn from a seed per (face, view),
so a cache can be rebuilt bit for bit.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.transforms import v2

CUTOUT_GREY = (128, 128, 128)


# Built once per size: building RandAugment's op table cost more than applying it (0.55 ms of a
# 1.4 ms strong view on 48-px faces), and the transforms draw their randomness only when applied.
@lru_cache(maxsize=16)
def weak_transform(size: int) -> v2.Compose:
    return v2.Compose(
        [v2.RandomResizedCrop(size, scale=(0.85, 1.0), ratio=(0.95, 1.05), antialias=True), v2.RandomHorizontalFlip()]
    )


@lru_cache(maxsize=16)
def strong_transform(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.85, 1.15), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandAugment(num_ops=2, magnitude=10),
        ]
    )


def cutout(image: Image.Image, rng: np.random.Generator, low: float = 0.2, high: float = 0.4) -> Image.Image:
    """Grey out one random square (side low..high of the image) so no single region decides."""
    image = image.copy()
    width, height = image.size
    side = int(rng.uniform(low, high) * min(width, height))
    x, y = int(rng.integers(0, max(1, width - side))), int(rng.integers(0, max(1, height - side)))
    ImageDraw.Draw(image).rectangle((x, y, x + side, y + side), fill=CUTOUT_GREY)
    return image


def strong_view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A strong view drawn from `rng` alone (torch's generator is forked and seeded from it), so
    the head-mode cache can rebuild it bit for bit."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
        return random_strong_view(image, rng)


def random_strong_view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A strong view drawn from torch's global generator (seeded per DataLoader worker) and `rng`:
    for fine-tune mode's endless batches, without strong_view's fork of the generator (0.2 ms)."""
    return cutout(strong_transform(max(image.size))(image), rng)


def cached_views(image: Image.Image, face_id: int, seed: int, n_strong: int) -> list[Image.Image]:
    """View 0: the face; view 1: mirrored; views 2..: strong augmentations (seeded by face and seed)."""
    rng = np.random.default_rng([seed, int(face_id)])
    views = [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    views.extend(strong_view(image, rng) for _ in range(n_strong))
    return views
