"""Help ▸ About's facts and the user guide, without Qt: the version and licence of the studio, the
licences of the weights it runs (checked against the licence text installed beside them), and
the guide shipped as package data."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from core.about import USER_GUIDE, about, bundled_weights, user_guide

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# How each licence names itself in its own text.
LICENCE_WORDS = {"Apache-2.0": ("apache license", "apache-2.0"), "MIT": ("mit license",)}


def test_the_studio_names_its_version_and_licence_from_pyproject():
    facts = about()
    assert facts.version == PYPROJECT["project"]["version"]
    assert facts.licence == PYPROJECT["project"]["license"] == "Apache-2.0"
    assert facts.name == "FER Studio" and facts.summary


def test_each_bundled_weights_licence_is_the_one_its_installed_text_states():
    weights = bundled_weights()
    names = " ".join(w.name for w in weights)
    assert all(model in names for model in ("MediaPipe", "EfficientNet-Lite0", "MiniLM")), names
    for entry in weights:
        assert entry.licence_file is not None and entry.licence_file.is_file(), entry.name
        text = entry.licence_file.read_text(encoding="utf-8", errors="replace").lower()
        assert any(word in text for word in LICENCE_WORDS[entry.licence]), (entry.name, entry.licence_file)
    pip_packages = [w for w in weights if w.source.startswith("pip package")]
    assert pip_packages and all(w.version for w in pip_packages)


def test_the_user_guide_covers_the_studio_and_ships_as_package_data():
    guide = user_guide()
    for topic in (
        "Open a project",
        "Train a model",
        "Review",
        "1–7",
        "embedding map",
        "Live refit",
        "Working as a team",
    ):
        assert topic in guide, topic
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["core.resources"]
    assert any(fnmatch(USER_GUIDE, pattern) for pattern in patterns), patterns
