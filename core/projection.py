"""2-D projections of embeddings for the map: PCA (instant) and UMAP (umap-learn, slower; its
first use in a process compiles with numba). Results are stored per run in the projections
table, which is the cache: nothing is recomputed once written."""

from __future__ import annotations

import os

import numpy as np

METHODS = ("umap", "pca")


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    x = embeddings.astype(np.float64) - embeddings.mean(axis=0, keepdims=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2), dtype=np.float32)
    _u, _s, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords.astype(np.float32)


def umap_2d(embeddings: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    if embeddings.shape[0] < 4:
        return pca_2d(embeddings)
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "numba"))
    import umap  # deferred: importing umap-learn costs seconds

    cache_numba_compiles()
    _limit_numba_threads()
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, embeddings.shape[0] - 1),
        min_dist=0.1,
        metric="cosine",
        random_state=seed,
        n_jobs=1,
    )
    return reducer.fit_transform(embeddings).astype(np.float32)


# umap-learn's and pynndescent's modules whose numba functions the map uses.
NUMBA_MODULES = (
    "umap.umap_",
    "umap.layouts",
    "umap.utils",
    "umap.distances",
    "umap.sparse",
    "umap.spectral",
    "pynndescent.pynndescent_",
    "pynndescent.utils",
    "pynndescent.distances",
    "pynndescent.rp_trees",
    "pynndescent.sparse",
)
_numba_cache_enabled = False


def cache_numba_compiles() -> int:
    """Turn numba's on-disk cache on for umap-learn's and pynndescent's functions, which are
    compiled without it: otherwise every fresh process (each training run) compiles them again
    for its first map, 10-12 s of the demo's 13 s map phase; with the cache, a later process
    loads the machine code (the demo's fit: 1.4 s). The cache lives in NUMBA_CACHE_DIR, keyed by
    the packages' source files, so an upgraded umap-learn compiles afresh. Returns how many
    functions were switched; a function numba cannot cache (no writable cache folder) stays as
    it was."""
    global _numba_cache_enabled
    if _numba_cache_enabled:
        return 0
    _numba_cache_enabled = True
    import importlib
    import warnings

    from numba.core.errors import NumbaWarning
    from numba.core.registry import CPUDispatcher

    # The few functions numba cannot store (pynndescent's nn_descent: dynamic globals) say so at
    # each compile; they compile as before.
    warnings.filterwarnings("ignore", message=".*Cannot cache compiled function", category=NumbaWarning)

    switched = 0
    for name in NUMBA_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for function in list(vars(module).values()):
            # A dispatcher without a cache (numba's NullCache) reports no cache path.
            if isinstance(function, CPUDispatcher) and function.stats.cache_path is None:
                try:
                    function.enable_caching()
                    switched += 1
                except RuntimeError:  # no locator: the cache folder cannot be written
                    continue
    return switched


def _limit_numba_threads() -> None:
    """umap's nearest-neighbour search runs numba-parallel: on this process's compute threads
    (core/threads.py), not one per core whatever else runs."""
    import numba

    from core.threads import compute_threads

    # numba.config sets its settings from the environment at import, where mypy cannot see them.
    ceiling = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, min(compute_threads(), ceiling)))


def compile_umap() -> None:
    """A tiny UMAP fit: compiles umap-learn's numba functions in this process and stores them in
    the disk cache for later ones (bootstrap.sh runs it once after installing; the warm worker
    runs it when idle). Both of umap-learn's neighbour searches: the exact one it uses below 4,096
    faces and pynndescent's above."""
    sample = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    umap_2d(sample)
    import umap

    umap.UMAP(
        n_components=2, n_neighbors=15, metric="cosine", random_state=0, n_jobs=1, force_approximation_algorithm=True
    ).fit_transform(sample)


def project_2d(embeddings: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    if method == "pca":
        return pca_2d(embeddings)
    if method == "umap":
        return umap_2d(embeddings, seed)
    raise ValueError(f"unknown projection {method!r}; use one of {', '.join(METHODS)}")


if __name__ == "__main__":  # python -m core.projection: fill numba's cache for the map
    compile_umap()
