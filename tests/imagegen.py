"""Image files for tests, including hostile ones, generated on the fly (no data needed)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def face_like(seed: int, size: int = 48, mode: str = "L") -> Image.Image:
    """A distinct small image per seed (random blobs); enough for import tests."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size, size)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    return image.convert(mode) if mode != "L" else image


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def write_class_folders(root: Path, per_class: dict[str, int], size: int = 48, seed0: int = 0) -> Path:
    seed = seed0
    for name, count in per_class.items():
        for i in range(count):
            save(face_like(seed, size), root / name / f"{name}_{i:04d}.png")
            seed += 1
    return root


def truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    face_like(1, 96, "RGB").save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def huge_png_header(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A tiny file whose header claims a gigantic image (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def exif_rotated_jpeg(path: Path, width: int = 60, height: int = 30) -> Path:
    """A landscape JPEG whose EXIF says 'rotate 90 degrees' (orientation 6)."""
    image = face_like(7, 1, "RGB").resize((width, height))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, format="JPEG", exif=exif.tobytes())
    return path


def sixteen_bit_png(path: Path) -> Path:
    array = (np.linspace(0, 65535, 48 * 48).reshape(48, 48)).astype(np.uint16)
    Image.fromarray(array).save(path, format="PNG")
    return path
