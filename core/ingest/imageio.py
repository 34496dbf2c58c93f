"""Decoding and validating image files, the same way everywhere (import, thumbnails, training).

Every problem becomes an ImageProblem whose message says what is wrong in words a user can act
on; the caller adds the file name.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger images are refused before their pixels are decoded (a decompression bomb, or a
# scan far beyond anything a face needs).
MAX_PIXELS = 64_000_000
MAX_FILE_BYTES = 256 * 1024 * 1024
# Transparent pixels are composited onto neutral grey so they do not read as skin or hair.
BACKGROUND_GREY = (128, 128, 128)

Image.MAX_IMAGE_PIXELS = None  # our own limit (MAX_PIXELS) is checked, with a better message


class ImageProblem(ValueError):
    """A file that cannot be used as a face image; the message says why."""


def read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageProblem("file not found") from None
    except OSError as exc:
        raise ImageProblem(f"cannot read the file ({exc.strerror or exc})") from None
    if size == 0:
        raise ImageProblem("empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageProblem(f"file too large ({size / 2**20:.0f} MB; limit {MAX_FILE_BYTES // 2**20} MB)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageProblem(f"cannot read the file ({exc.strerror or exc})") from None


def decode_image(data: bytes) -> tuple[Image.Image, str, str]:
    """Decode bytes into an upright RGB image. Returns (image, format, original mode)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageProblem("not an image, or an image format that cannot be read") from None
    except Exception as exc:  # Pillow raises many types for damaged headers
        raise ImageProblem(f"damaged image header ({exc})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageProblem(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageProblem(
            f"image too large to decode safely ({width}x{height} = {width * height / 1e6:.0f} "
            f"megapixels; limit {MAX_PIXELS / 1e6:.0f})")
    fmt = image.format or "unknown"
    mode = image.mode
    try:
        image.load()
    except OSError as exc:
        raise ImageProblem(f"truncated or corrupt image data ({exc})") from None
    except Exception as exc:
        raise ImageProblem(f"corrupt image data ({exc})") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:
        pass  # a damaged EXIF block only loses the orientation, not the picture
    return to_rgb(image), fmt, mode


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode (1, L, LA, P, RGBA, CMYK, I;16, I, F ...) to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image))).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_GREY + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Map 16-bit, 32-bit integer and float pixels onto 0..255 without wrapping around."""
    array = array.astype(np.float64)
    if array.size == 0:
        return array.astype(np.uint8)
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1.0 and high > 0:  # float images in [0, 1]
        scaled = array * 255.0
    elif low >= 0 and high <= 255:
        scaled = array
    elif low >= 0 and high <= 65535:  # 16-bit range: keep absolute brightness
        scaled = array / 257.0
    else:
        scaled = (array - low) / max(high - low, 1e-12) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Read and decode a file into an upright RGB image, or raise ImageProblem."""
    image, _fmt, _mode = decode_image(read_bytes(path))
    return image


def crop_box(image: Image.Image, box: tuple[int, int, int, int] | None) -> Image.Image:
    if box is None:
        return image
    x, y, w, h = box
    return image.crop((x, y, x + w, y + h))


def load_face(path: Path, crop_path: Path | None = None,
              box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """The RGB face of one stored image: its cached crop, else the source cut to its box."""
    if crop_path is not None and crop_path.is_file():
        try:
            return load_rgb(crop_path)
        except ImageProblem:
            pass  # a damaged cache file is rebuilt from the source below
    return crop_box(load_rgb(path), box)
