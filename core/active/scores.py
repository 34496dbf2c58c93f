"""Pure scoring functions of the review queue: numpy arrays in, one number per face out.

Probabilities are (n, C) arrays in class order; a level that a face lacks is a row of NaN.
Entropies and divergences are in bits, as on the studio's embedding map (core/run_data.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_TINY = 1e-12  # keeps log(0) out of entropies; probabilities are stored to 5 decimals
# k-means restarts for up to this many clusters (the benchmarked batches of 100), one above it:
# k-means++ seeding dominates for big batches (k-means alone for a queue of 2,000: 67 s with 3, 17 s with 1).
KMEANS_RESTARTS_UP_TO = 200


def top_two(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices and values of each row's two most probable classes (first, second, p1, p2).

    Ties go to the lower class index, so results do not depend on sort internals."""
    order = np.argsort(-probs, axis=1, kind="stable")
    first, second = order[:, 0], order[:, 1]
    rows = np.arange(len(probs))
    return first, second, probs[rows, first], probs[rows, second]


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - max p: higher is less sure."""
    return 1.0 - probs.max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability: lower is less sure (a near tie between two classes)."""
    _, _, p1, p2 = top_two(probs)
    return p1 - p2


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row in bits: higher is less sure (at most log2 C)."""
    return -(probs * np.log2(np.clip(probs, _TINY, 1.0))).sum(axis=1)


def js_divergence(levels: Sequence[np.ndarray]) -> np.ndarray:
    """Generalised Jensen-Shannon divergence between the levels each face has.

    JS = H(mean of the levels) - mean of their entropies: 0 when all levels agree exactly, up to
    log2(number of levels) when they are certain of different classes. A level missing for a
    face (a NaN row) is left out for that face; faces with fewer than two levels get NaN.
    """
    stack = np.stack([np.asarray(level, dtype=np.float64) for level in levels])  # (L, n, C)
    present = ~np.any(np.isnan(stack), axis=2)  # (L, n)
    count = present.sum(axis=0)
    filled = np.where(present[..., None], stack, 0.0)
    mean = filled.sum(axis=0) / np.maximum(count, 1)[:, None]
    level_entropy = np.where(present, -(filled * np.log2(np.clip(filled, _TINY, 1.0))).sum(axis=2), 0.0)
    divergence = entropy(mean) - level_entropy.sum(axis=0) / np.maximum(count, 1)
    divergence = np.maximum(divergence, 0.0)  # rounding of stored probabilities can dip below 0
    return np.where(count >= 2, divergence, np.nan)


def threshold_gap(confidence: np.ndarray, predicted: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How far each face's confidence is under its predicted class's threshold (negative: over)."""
    return thresholds[predicted] - confidence


def near_threshold_order(gap: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Review order for threshold gaps: faces under their threshold first, smallest gap first,
    then the faces over it, closest first; `tiebreak` (face ids) settles equal gaps."""
    under = gap > 0
    return np.lexsort((tiebreak, np.abs(gap), ~under))


def k_center_greedy(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (core-set) selection under cosine distance.

    Starts from row 0 (callers put the most uncertain face there) and then repeatedly takes the
    row farthest from everything taken so far, so a batch covers the pool instead of repeating
    near-duplicates. Returns the chosen rows in order and each one's distance to the nearest
    earlier choice (0 for the first). Deterministic: ties go to the lower row.
    """
    n = len(points)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    unit = (points / np.maximum(norms, _TINY)).astype(np.float32)
    chosen = np.empty(k, dtype=np.int64)
    gaps = np.zeros(k)
    nearest = np.full(n, np.inf)
    taken = np.zeros(n, dtype=bool)
    current = 0
    for step in range(k):
        chosen[step] = current
        gaps[step] = 0.0 if step == 0 else nearest[current]
        taken[current] = True
        # einsum, not `@`: a matrix-vector product this small gains nothing from BLAS threads,
        # which spin and slow it 50-fold when the cores are busy (measured on 2 shared cores).
        similarity = np.einsum("ij,j->i", unit, unit[current])
        nearest = np.minimum(nearest, np.maximum(1.0 - similarity, 0.0))
        current = int(np.argmax(np.where(taken, -np.inf, nearest)))
    return chosen, gaps


def _prediction_residual(probs: np.ndarray) -> np.ndarray:
    """p - one-hot of the predicted class: the last layer's gradient direction per face."""
    residual = probs.astype(np.float64)  # a copy
    residual[np.arange(len(probs)), probs.argmax(axis=1)] -= 1.0
    return residual


def gradient_embedding_norms(probs: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Norm of each face's last-layer gradient embedding (p - one-hot of the prediction) ⊗ x.

    The outer product's norm factorises: |p - e| * |x|, so the (n, C x dim) matrix is never built."""
    return np.linalg.norm(_prediction_residual(probs), axis=1) * np.linalg.norm(points, axis=1)


def badge_select(probs: np.ndarray, points: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding over last-layer gradient embeddings.

    A face's gradient embedding, (p - one-hot of its prediction) ⊗ x, is long where the model is
    unsure and points where its features are, so D²-sampling over these embeddings trades
    uncertainty against spread in one step, with no weight to tune. Inner products factorise,
    <g_i, g_j> = <r_i, r_j> <x_i, x_j>, so each step costs two matrix-vector products. The first
    pick is the longest embedding, then each next one is drawn with probability proportional to
    its squared distance from the nearest pick so far (a face identical to a pick has
    probability 0). Returns the chosen rows in order and each one's distance to the nearest
    earlier pick (for the first, its own length). Seeded: the same inputs and seed give the same
    rows.
    """
    n = len(probs)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    residual = _prediction_residual(probs)
    x = points.astype(np.float64)
    squared = (residual * residual).sum(axis=1) * (x * x).sum(axis=1)
    rng = np.random.default_rng(seed)
    chosen = np.empty(k, dtype=np.int64)
    gaps = np.empty(k)
    current = int(np.argmax(squared))
    nearest = np.full(n, np.inf)
    for step in range(k):
        chosen[step] = current
        gaps[step] = np.sqrt(squared[current]) if step == 0 else np.sqrt(max(nearest[current], 0.0))
        # einsum rather than `@`: see k_center_greedy (BLAS threads spin on busy cores).
        inner = np.einsum("ij,j->i", residual, residual[current]) * np.einsum("ij,j->i", x, x[current])
        nearest = np.minimum(nearest, np.maximum(squared + squared[current] - 2.0 * inner, 0.0))
        nearest[chosen[: step + 1]] = 0.0
        total = nearest.sum()
        if step + 1 == k:
            break
        if total <= 1e-12:  # every face is a copy of a pick: take the rest in order of length
            rest = np.setdiff1d(np.argsort(-squared, kind="stable"), chosen[: step + 1], assume_unique=True)
            chosen[step + 1 :] = rest[: k - step - 1]
            gaps[step + 1 :] = 0.0
            break
        current = int(rng.choice(n, p=nearest / total))
    return chosen, gaps


def typicality(points: np.ndarray, queries: np.ndarray, k: int = 20, chunk: int = 1024) -> np.ndarray:
    """TypiClust's typicality (Hacohen et al., ICML 2022) of `points[queries]` within `points`:
    the inverse of the mean distance to the k nearest other points, on unit vectors.

    High where many faces look alike (a correction there teaches about all of them); low for
    outliers, which in FER2013 are often non-faces or ambiguous crops whose label teaches
    little. Distances run in chunks of queries, so memory stays at chunk x len(points)."""
    unit = (points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), _TINY)).astype(np.float32)
    k = max(1, min(k, len(points) - 1))
    out = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        rows = queries[start : start + chunk]
        similarity = unit[rows] @ unit.T  # a matrix product: BLAS threads pay off here
        similarity[np.arange(len(rows)), rows] = -np.inf  # a face is not its own neighbour
        nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
        distance = np.sqrt(np.maximum(2.0 - 2.0 * nearest, 0.0))
        out[start : start + len(rows)] = 1.0 / np.maximum(distance.mean(axis=1), _TINY)
    return out


def typical_per_cluster(points: np.ndarray, typical: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k rows, one per k-means cluster of `points`: each cluster's most typical member.

    The clusters spread a batch over the pool (no two picks are look-alikes of one another);
    taking the most typical member of each, rather than the farthest (k-center), keeps outliers
    out. Returns the chosen rows (largest cluster first) and their clusters' sizes. Seeded."""
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    n = len(points)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    unit = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), _TINY)
    with warnings.catch_warnings():  # fewer distinct points than clusters: the empty ones are skipped below
        warnings.simplefilter("ignore", ConvergenceWarning)
        restarts = 3 if k <= KMEANS_RESTARTS_UP_TO else 1
        assignment = KMeans(n_clusters=k, n_init=restarts, random_state=seed).fit_predict(unit.astype(np.float64))
    representatives: list[int] = []
    cluster_sizes: list[int] = []
    for cluster in range(k):
        members = np.flatnonzero(assignment == cluster)
        if len(members):  # k-means can leave a cluster empty on duplicate points
            representatives.append(int(members[np.argmax(typical[members])]))
            cluster_sizes.append(len(members))
    picks, sizes = np.array(representatives, dtype=np.int64), np.array(cluster_sizes, dtype=np.int64)
    order = np.lexsort((picks, -sizes))
    return picks[order], sizes[order]
