"""The map's projections: PCA, and UMAP whose numba compiles are cached on disk across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.projection import pca_2d, project_2d

REPO = Path(__file__).resolve().parents[1]

UMAP_IN_A_FRESH_PROCESS = """
import importlib, numpy as np
from numba.core.registry import CPUDispatcher
from core.projection import NUMBA_MODULES, umap_2d
coords = umap_2d(np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))
assert coords.shape == (40, 2) and np.isfinite(coords).all()
hits = misses = 0
for name in NUMBA_MODULES:
    for function in vars(importlib.import_module(name)).values():
        if isinstance(function, CPUDispatcher):
            hits += sum(function.stats.cache_hits.values())
            misses += sum(function.stats.cache_misses.values())
print(hits, misses)
"""


def _umap_process(cache_dir: Path) -> tuple[int, int]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "FER_STUDIO_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", UMAP_IN_A_FRESH_PROCESS], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    hits, misses = (int(v) for v in out.stdout.split())
    return hits, misses


def test_a_second_process_loads_umap_s_compiled_functions_from_the_disk_cache(tmp_path):
    first_hits, first_misses = _umap_process(tmp_path / "numba")
    assert first_hits == 0 and first_misses > 20, "a fresh cache folder: everything compiles (and is stored)"
    hits, misses = _umap_process(tmp_path / "numba")
    assert hits >= 0.9 * first_misses, f"the second process compiled {misses} of {hits + misses} functions again"


def test_pca_and_unknown_projection():
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    assert pca_2d(x).shape == (30, 2)
    assert project_2d(x[:1], "pca").shape == (1, 2)
    with pytest.raises(ValueError, match="tsne"):
        project_2d(x, "tsne")
