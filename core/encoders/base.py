"""The one small interface every encoder implements, plus the pieces they share.

An encoder pairs an image tower (trainable in fine-tune mode, frozen and cached in head mode)
with a frozen text tower whose class-description embeddings anchor the text level.
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.encoders.errors import EncoderError

# A face crop whose sides differ by at most this ratio is resized directly, without cropping:
# a 1-2 px mismatch from the detector must not cut off a chin or the eyebrows.
SQUARE_TOLERANCE = 1.02


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available unless told otherwise; never hard-coded."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EncoderError(f"bad device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} was asked for, but CUDA is not available here; use 'cpu'")
    return resolved


def safe_key(text: str) -> str:
    """A string usable as one folder name on every platform."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "encoder"


class Encoder(abc.ABC):
    spec: str
    image_dim: int
    text_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_tower: torch.nn.Module
    cache_key: str

    _device: torch.device = torch.device("cpu")

    # ---- images -----------------------------------------------------------------------
    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> (B,3,S,S) normalised float32 on the CPU (the caller moves batches)."""
        return self.preprocessor()(images)

    def preprocessor(self) -> Preprocessor:
        """A small picklable copy of the preprocessing, for DataLoader worker processes."""
        return Preprocessor(self.input_size, self.mean, self.std)

    def encode_images(self, batch: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) normalised -> (B,image_dim) float32 features, not normalised."""
        return self._frozen(self.image_tower, batch).float()

    def spatial_features(self, batch: torch.Tensor) -> torch.Tensor:
        """(B,C,h,w): the last feature map before pooling (no grad, eval mode).

        Trainable code calls image_tower.forward_spatial directly instead.
        """
        forward_spatial = getattr(self.image_tower, "forward_spatial", None)
        if forward_spatial is None:
            raise NotImplementedError(f"encoder {self.spec!r} does not expose spatial feature maps")
        return self._frozen(forward_spatial, batch).float()

    def _frozen(self, fn, batch: torch.Tensor) -> torch.Tensor:
        # The tower may be mid-fine-tune: run it in eval mode and put its mode back afterwards.
        was_training = self.image_tower.training
        self.image_tower.eval()
        try:
            with torch.no_grad():
                return fn(batch.to(self._device, dtype=torch.float32))
        finally:
            self.image_tower.train(was_training)

    # ---- texts ------------------------------------------------------------------------
    @abc.abstractmethod
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """(N,text_dim) float32, L2-normalised, on the encoder's device."""

    # ---- bookkeeping ------------------------------------------------------------------
    @abc.abstractmethod
    def describe(self) -> str:
        """One line for users: model, weights, how they were verified, device."""

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: str | torch.device) -> Encoder:
        self._device = resolve_device(device)
        self.image_tower.to(self._device)
        self._move_text_tower(self._device)
        return self

    def _move_text_tower(self, device: torch.device) -> None:  # noqa: B027 - a no-op where there is no text model
        """Subclasses with a loaded text model move it here."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r} on {self._device}>"


def rgb_triple(values: Iterable[float]) -> tuple[float, float, float]:
    """Per-channel numbers (a mean or a std) as R, G and B floats; not three of them is an error."""
    red, green, blue = (float(v) for v in values)
    return red, green, blue


class Preprocessor:
    """RGB PIL images -> (B,3,S,S) normalised float32: fit to a square, scale, normalise."""

    def __init__(self, size: int, mean: tuple[float, float, float], std: tuple[float, float, float]):
        self.size, self.mean, self.std = size, mean, std
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __getstate__(self) -> dict:  # worker processes get the numbers, not tensors on a GPU
        return {**self.__dict__, "_constants": {}}

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        return self.normalize(self.to_uint8(images))

    def to_uint8(self, images: list[Image.Image]) -> torch.Tensor:
        """(B,3,S,S) uint8: fitted and scaled, not yet normalised. Image loaders hand these over
        (a quarter of float32's bytes) and normalise where the model runs."""
        size = self.size
        if not images:
            return torch.zeros((0, 3, size, size), dtype=torch.uint8)
        arrays = np.stack([np.asarray(_fit_square(img, size), dtype=np.uint8) for img in images])
        return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B,3,S,S) from to_uint8, on any device -> normalised float32."""
        batch = batch.float().div_(255.0)
        mean, std = self._on(batch.device)
        return batch.sub_(mean).div_(std).contiguous()

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Made once per device: copying them to a GPU at every batch would wait for its queued work.
        if device not in self._constants:
            mean, std = (
                torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1) for v in (self.mean, self.std)
            )
            self._constants[device] = (mean, std)
        return self._constants[device]


def _fit_square(image: Image.Image, size: int) -> Image.Image:
    """Square face crops are resized directly; other shapes: shorter side to size, centre crop."""
    image = image.convert("RGB")
    w, h = image.size
    if max(w, h) <= SQUARE_TOLERANCE * min(w, h):
        return image.resize((size, size), Image.Resampling.BICUBIC)
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (weights files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
