"""`tiny`: a random-init CNN and a hashed bag-of-words text tower, for tests only.

No downloads, milliseconds per batch, and bit-for-bit the same weights in every instance
(fixed seed), so tests can compare features across processes.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import torch
from torch import nn

from core.encoders.base import Encoder, resolve_device

SEED = 1234
INPUT_SIZE = 48  # FER2013's native size: no upscaling cost in tests
TEXT_DIM = 64
WIDTHS = (16, 32, 64, 64, 64)  # about 0.1 M parameters
# Features keep the 6x6 layout of the last map: a random network's global average would wash
# out where things are (mouth shape, brow slope) and leave little for a head to learn from.
POOL = 6


class TinyTower(nn.Module):
    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for i, width in enumerate(WIDTHS):
            stride = 2 if i < 3 else 1  # 48 -> 24 -> 12 -> 6, then keep 6x6 for spatial features
            layers += [
                nn.Conv2d(channels, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.body = nn.Sequential(*layers)
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                # He init keeps activations at unit scale through the untrained ReLU stack.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.out_dim = channels * POOL * POOL

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(self.forward_spatial(x), POOL).flatten(1)


def _build_tower() -> TinyTower:
    # fork_rng keeps the caller's global random state untouched by our fixed seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return TinyTower()


@lru_cache(maxsize=4096)
def _word_vector(word: str) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(TEXT_DIM, generator=generator)


def hashed_text_embedding(text: str) -> torch.Tensor:
    """Sum of per-word pseudo-random vectors, normalised; an empty text gets a fixed vector."""
    words = re.findall(r"[a-z0-9']+", text.lower()) or [""]
    vector = torch.stack([_word_vector(w) for w in words]).sum(0)
    return vector / vector.norm().clamp_min(1e-12)


class TinyEncoder(Encoder):
    def __init__(self, device: str | torch.device | None = None):
        self.spec = "tiny"
        self.image_tower = _build_tower()
        self.image_dim = self.image_tower.out_dim
        self.text_dim = TEXT_DIM
        self.input_size = INPUT_SIZE
        self.mean = (0.5, 0.5, 0.5)
        self.std = (0.5, 0.5, 0.5)
        self.cache_key = f"tiny-s{SEED}-i{INPUT_SIZE}-w{'x'.join(map(str, WIDTHS))}-p{POOL}-he"
        self.to(resolve_device(device))

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, TEXT_DIM), device=self._device)
        return torch.stack([hashed_text_embedding(t) for t in texts]).to(self._device)

    def describe(self) -> str:
        params = sum(p.numel() for p in self.image_tower.parameters())
        return (
            f"tiny: random-init {params / 1e6:.2f} M-parameter CNN (seed {SEED}, {INPUT_SIZE} px) "
            f"and hashed bag-of-words text, for tests only; no pretrained weights; on {self._device}"
        )
