"""The studio as an installed package, away from the repository: the wheel is built, installed
into a fresh virtual environment in a temporary folder, and its `fer-studio` command runs there
with the shipped files (classes, descriptions, face models) found inside the installed package.

The new environment borrows this one's third-party packages through a path file (listing a
folder in a .pth does not run that folder's own .pth files, so this checkout's editable install
stays out), installs the wheel itself without dependencies, and runs with the temporary folder
as its working directory, so nothing of the checkout can be imported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _source_copy(target: Path) -> Path:
    """The checkout's files that git tracks or would track (not ignored), copied: a build of the
    checkout itself would reuse a stale build/ folder and hide a file missing from the wheel."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        path = REPO / name
        if path.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("installed")
    source = _source_copy(root / "source")
    wheels = root / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("fer_studio-*.whl"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env_dir, env


def run(installed, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env_dir, env = installed
    return subprocess.run(
        [str(env_dir / "bin" / "fer-studio"), *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )


def test_the_installed_package_is_the_wheel_and_ships_its_files(installed):
    env_dir, env = installed
    code = (
        "import core, core.resources as r, core.ingest.landmarks as l, core.about as a; "
        "print(core.__file__); print(r.resource_path('classes.json')); print(l.MODELS_DIR); "
        "print(r.resource_path(a.USER_GUIDE)); print(a.about().version)"
    )
    out = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=env_dir, env=env, check=True
    ).stdout.split()
    *paths, version = out
    assert all(Path(p).is_relative_to(env_dir) for p in paths), out  # not the checkout
    # Help ▸ About's version, read from the installed package's metadata (no pyproject.toml there).
    assert version == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    models = Path(out[2])
    assert {
        "face_detection_short_range.tflite",
        "face_landmark.tflite",
        "face_mesh_reference.npy",
        "LICENSE-mediapipe.txt",
    } <= {p.name for p in models.iterdir()}


def test_fer_studio_help_and_demo_run_outside_the_repository(installed, tmp_path):
    shown = run(installed, "--help", cwd=tmp_path)
    assert shown.returncode == 0 and "import" in shown.stdout and "train" in shown.stdout, shown.stderr
    made = run(
        installed,
        "demo",
        str(tmp_path / "demo"),
        "--train-per-class",
        "3",
        "--val-per-class",
        "1",
        "--labeled-per-class",
        "1",
        "-q",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    stats = run(installed, "stats", str(tmp_path / "demo"), "--json", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr[-2000:]
    counts = json.loads(stats.stdout)
    assert counts["images"] == 7 * (3 + 1) and counts["labeled"] == 7 * (1 + 1)  # 1 per class in train, all of val
