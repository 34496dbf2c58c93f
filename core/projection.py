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

    _limit_numba_threads()
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, embeddings.shape[0] - 1),
                        min_dist=0.1, metric="cosine", random_state=seed, n_jobs=1)
    return reducer.fit_transform(embeddings).astype(np.float32)


def _limit_numba_threads() -> None:
    """umap's nearest-neighbour search runs numba-parallel: on this process's compute threads
    (core/threads.py), not one per core whatever else runs."""
    import numba

    from core.threads import compute_threads

    numba.set_num_threads(max(1, min(compute_threads(), numba.config.NUMBA_NUM_THREADS)))


def project_2d(embeddings: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    if method == "pca":
        return pca_2d(embeddings)
    if method == "umap":
        return umap_2d(embeddings, seed)
    raise ValueError(f"unknown projection {method!r}; use one of {', '.join(METHODS)}")
