"""Decoding and validating image files, the same way everywhere (import, thumbnails, training).

Every problem becomes an ImageProblem whose message says what is wrong in words a user can act
on; the caller adds the file name.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.ingest.files import NotRegularFile, open_regular

# Larger images are refused before their pixels are decoded (a decompression bomb, or a
# scan far beyond anything a face needs).
MAX_PIXELS = 64_000_000
MAX_FILE_BYTES = 256 * 1024 * 1024
# Transparent pixels are composited onto neutral grey so they do not read as skin or hair.
BACKGROUND_GREY = (128, 128, 128)

# Peak memory per pixel of reading one file by its header's mode: decode, RGB conversion, face
# search; the file's bytes come on top. Peak RSS measured on 16-megapixel files (7-8 bytes for
# 1/L/P/RGB/CMYK/I;16/RGBA, 9 for P with transparency, 12 for LA, I and F), rounded up with margin.
# The importer's memory budget admits decodes by these estimates.
PEAK_BYTES_PER_PIXEL = {
    "1": 10,
    "L": 10,
    "RGB": 10,
    "YCbCr": 10,
    "CMYK": 10,
    "RGBA": 10,
    "I;16": 10,
    "I;16B": 10,
    "I;16L": 10,
    "P": 12,
    "LA": 15,
    "PA": 15,
    "I": 15,
    "F": 15,
}
MAX_PEAK_BYTES_PER_PIXEL = 16  # any other mode
Image.MAX_IMAGE_PIXELS = None  # our own limit (MAX_PIXELS) is checked, with a better message


class ImageProblem(ValueError):
    """A file that cannot be used as a face image; the message says why."""


class ImageFile:
    """An open regular file whose image header can be read before its pixels are."""

    def __init__(self, handle: BinaryIO, size: int):
        self.handle = handle
        self.size = size

    def header(self) -> tuple[int, int, str] | None:
        """(width, height, mode) from the header alone, or None when it is no readable image."""
        try:
            self.handle.seek(0)
            with Image.open(self.handle) as image:  # lazy: the pixels are not decoded
                return image.width, image.height, image.mode
        except Exception:  # noqa: BLE001 - decode_image says what is wrong, with the same words as ever
            return None

    def read(self) -> bytes:
        try:
            self.handle.seek(0)
            data = self.handle.read(MAX_FILE_BYTES + 1)  # a file that grew since stat: still bounded
        except OSError as exc:
            raise ImageProblem(f"cannot read the file ({exc.strerror or exc})") from None
        if len(data) > MAX_FILE_BYTES:
            raise ImageProblem(f"file too large (limit {MAX_FILE_BYTES // 2**20} MB)")
        return data


@contextmanager
def open_image_file(path: str | os.PathLike) -> Iterator[ImageFile]:
    """Open a file to decode; only regular files (never a FIFO or a device), not empty or huge."""
    try:
        handle, size = open_regular(path)
    except FileNotFoundError:
        raise ImageProblem("file not found") from None
    except NotRegularFile as exc:
        raise ImageProblem(str(exc)) from None
    except OSError as exc:
        raise ImageProblem(f"cannot read the file ({exc.strerror or exc})") from None
    with handle:
        if size == 0:
            raise ImageProblem("empty file (0 bytes)")
        if size > MAX_FILE_BYTES:
            raise ImageProblem(f"file too large ({size / 2**20:.0f} MB; limit {MAX_FILE_BYTES // 2**20} MB)")
        yield ImageFile(handle, size)


def read_bytes(path: str | os.PathLike) -> bytes:
    with open_image_file(path) as image_file:
        return image_file.read()


def decode_cost(file_bytes: int, header: tuple[int, int, str] | None) -> int:
    """Estimated peak memory (bytes) of reading, decoding and face-searching one file."""
    if header is None:
        return file_bytes  # refused at the header, before any pixels are decoded
    width, height, mode = header
    if width * height > MAX_PIXELS:
        return file_bytes
    return file_bytes + width * height * PEAK_BYTES_PER_PIXEL.get(mode, MAX_PEAK_BYTES_PER_PIXEL)


def decode_image(data: bytes) -> tuple[Image.Image, str, str]:
    """Decode bytes into an upright RGB image. Returns (image, format, original mode)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageProblem("not an image, or an image format that cannot be read") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged headers
        raise ImageProblem(f"damaged image header ({exc})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageProblem(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageProblem(
            f"image too large to decode safely ({width}x{height} = {width * height / 1e6:.0f} "
            f"megapixels; limit {MAX_PIXELS / 1e6:.0f})"
        )
    fmt = image.format or "unknown"
    mode = image.mode
    try:
        image.load()
    except OSError as exc:
        raise ImageProblem(f"truncated or corrupt image data ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow decoders raise many types on damaged data
        raise ImageProblem(f"corrupt image data ({exc})") from None
    try:
        ImageOps.exif_transpose(image, in_place=True)  # not a copy: one image's worth less at peak
    except Exception:  # noqa: BLE001
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
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        # Pasting through the alpha onto grey gives alpha_composite's pixels with two images
        # in memory instead of four.
        background = Image.new("RGB", rgba.size, BACKGROUND_GREY)
        background.paste(rgba, mask=rgba)
        return background
    return image.convert("RGB")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Map 16-bit, 32-bit integer and float pixels onto 0..255 without wrapping around."""
    # float32, scaled in place: one working copy (float64 and a new array per step took ~30
    # bytes a pixel at peak). 0..255 needs no more precision than float32 has.
    array = array.astype(np.float32)
    if array.size == 0:
        return array.astype(np.uint8)
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1.0 and high > 0:  # float images in [0, 1]
        array *= 255.0
    elif low >= 0 and high <= 255:
        pass
    elif low >= 0 and high <= 65535:  # 16-bit range: keep absolute brightness
        array /= 257.0
    else:
        array -= low
        array *= 255.0 / max(high - low, 1e-12)
    np.rint(array, out=array)
    np.clip(array, 0, 255, out=array)
    return array.astype(np.uint8)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Read and decode a file into an upright RGB image, or raise ImageProblem."""
    image, _fmt, _mode = decode_image(read_bytes(path))
    return image


def crop_box(image: Image.Image, box: tuple[int, int, int, int] | None, angle: float | None = None) -> Image.Image:
    """The face `box` of `image`, turned by `angle` degrees so its eyes are level (faces.aligned_crop)."""
    if box is None:
        return image
    x, y, w, h = box
    # Crop pads with black beyond the edges: a box from a damaged or tampered database
    # (w = 10**6) would allocate terabytes. Boxes the importer stores always lie inside.
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > image.width or y + h > image.height:
        raise ImageProblem(f"face box {x},{y} {w}x{h} lies outside the {image.width}x{image.height} image")
    if angle:
        from core.ingest.faces import aligned_crop  # OpenCV only where a face is turned

        return aligned_crop(image, box, angle)
    return image.crop((x, y, x + w, y + h))


def load_face(
    path: Path, crop_path: Path | None = None, box: tuple[int, int, int, int] | None = None, angle: float | None = None
) -> Image.Image:
    """The RGB face of one stored image: its cached crop, else the source cut to its box and
    turned by its eye line's `angle`."""
    if crop_path is not None and crop_path.is_file():
        try:
            return load_rgb(crop_path)
        except ImageProblem:
            pass  # a damaged cache file is rebuilt from the source below
    return crop_box(load_rgb(path), box, angle)
