"""Encoders chosen by name: `offline` (default), `tiny` (tests), `clip:MODEL[:PRETRAINED]`.

    enc = get_encoder("offline")            # device: CUDA if available, else CPU
    feats = enc.encode_images(enc.preprocess(pil_images))

Implementations, and torch itself, are imported only when asked for, so importing this
package stays cheap: the studio and the command-line parser check specs without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.encoders.errors import EncoderError

if TYPE_CHECKING:
    import torch

    from core.encoders.base import Encoder

DEFAULT_ENCODER = "offline"


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder of the registry: what it is and needs, a spec a user can pick as it is, and
    whether the studio offers it (a test encoder is not offered; it can still be typed)."""

    description: str
    example: str
    offered: bool = True


# name -> entry: the one list the command line, the errors and the studio's training form read.
REGISTRY: dict[str, EncoderEntry] = {
    "offline": EncoderEntry(
        "ImageNet EfficientNet-Lite0 (first 11 blocks, 3x3 grid, 1008-d) + MiniLM-L6 text (384-d); "
        "weights ship with pip packages, no download; the default",
        "offline",
    ),
    "clip:MODEL[:PRETRAINED]": EncoderEntry(
        "open_clip CLIP, e.g. clip:ViT-B-32:openai; PRETRAINED is a published tag "
        "(from the local cache, or downloaded once with network) or a local "
        "checkpoint path",
        "clip:ViT-B-32:openai",
    ),
    "tiny": EncoderEntry(
        "random-init small CNN + hashed bag-of-words text; for tests only, meaningless features", "tiny", offered=False
    ),
}
# name -> one-line description (what it is, what it needs)
ENCODERS: dict[str, str] = {name: entry.description for name, entry in REGISTRY.items()}

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "REGISTRY",
    "Encoder",
    "EncoderError",
    "available_encoders",
    "check_spec",
    "encoder_names",
    "get_encoder",
    "offered_encoders",
]


def encoder_names() -> list[str]:
    return list(ENCODERS)


def offered_encoders() -> list[str]:
    """Specs the studio lists for users, the default first."""
    return [entry.example for entry in REGISTRY.values() if entry.offered]


def available_encoders() -> list[str]:
    """One line per encoder: 'NAME: description'."""
    return [f"{name}: {text}" for name, text in ENCODERS.items()]


def check_spec(spec: str) -> None:
    """Raise EncoderError for a spec no encoder answers to, without loading anything."""
    head = spec.strip().partition(":")[0].lower() if isinstance(spec, str) else ""
    if head not in {name.partition(":")[0] for name in REGISTRY}:
        raise EncoderError(f"unknown encoder {spec!r}; known encoders:\n  " + "\n  ".join(available_encoders()))


def get_encoder(spec: str | None = None, device: str | torch.device | None = None) -> Encoder:
    """Create the encoder named by spec; every failure is an EncoderError that says what to do."""
    spec = spec if spec is not None else DEFAULT_ENCODER
    if not isinstance(spec, str) or not spec.strip():
        raise EncoderError(f"bad encoder spec {spec!r}: give one of {', '.join(ENCODERS)}")
    from core.encoders.base import resolve_device

    spec = spec.strip()
    resolved = resolve_device(device)
    head, _, rest = spec.partition(":")
    name = head.lower()
    if name == "clip":
        from core.encoders.openclip import create_clip_encoder

        return create_clip_encoder(spec, resolved)
    if name in ("offline", "tiny"):
        if rest:
            raise EncoderError(f"bad encoder spec {spec!r}: '{name}' takes no options")
        if name == "tiny":
            from core.encoders.tiny import TinyEncoder

            return TinyEncoder(resolved)
        from core.encoders.offline import OfflineEncoder

        return OfflineEncoder(resolved)
    raise EncoderError(f"unknown encoder {spec!r}; known encoders:\n  " + "\n  ".join(available_encoders()))


def __getattr__(name: str):
    # `from core.encoders import Encoder` still works; it loads torch only then.
    if name == "Encoder":
        from core.encoders.base import Encoder

        return Encoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
