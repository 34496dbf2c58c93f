"""A refit's faces placed in an existing 2-D map instead of a map computed from scratch.

The layout is a map that was computed (UMAP or PCA) from some run's embeddings. Each face is
moved by as much as the centre of its nearest neighbours moved: its neighbours are looked up
among a fixed set of anchor faces, once in the layout's own embedding space and once in the
refit's, and the centre of each neighbour set is read off the layout's coordinates. A face
whose neighbourhood is unchanged stays exactly where it was; a face the refit moved towards
another class travels with its new neighbours. Every refit is placed against the same layout
(not its parent's placement), so a day of refits never drifts or shrinks the map. A face that
the layout lacks (imported since) is put at the centre of its neighbours.

A (faces x anchors) distance matrix in a reduced space, chunked, and torch's top-k (5x numpy's
argpartition here): about a second for FER2013's 31k faces on one core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

NEIGHBOURS = 15  # UMAP's own default neighbourhood
MAX_ANCHORS = 4096  # faces searched as neighbours; more cost time, not placement quality
REDUCED_DIM = 64  # distances in a PCA of the embeddings: 8x less work than 512-d, same neighbours mostly
CHUNK = 2048


@dataclass
class Layout:
    """A map computed from scratch: the run it belongs to, its faces, their embeddings in that
    run's space and their coordinates per method (umap, pca)."""

    run_id: int
    face_ids: np.ndarray  # (m,) int64
    embeddings: np.ndarray  # (m, d) float32
    coords: dict[str, np.ndarray]  # method -> (m, 2)
    seed: int = 0
    _centres: dict = field(default_factory=dict, repr=False)  # anchor set -> the layout's own centres

    def __post_init__(self):
        self._row = {int(face): row for row, face in enumerate(self.face_ids)}

    def rows_of(self, face_ids: np.ndarray) -> np.ndarray:
        """Each face's row in the layout, or -1 where the layout lacks it."""
        return np.array([self._row.get(int(face), -1) for face in face_ids], dtype=np.int64)

    def choose_anchors(self, present: np.ndarray) -> np.ndarray:
        """Up to MAX_ANCHORS layout rows among those `present` (bool over layout rows), the same
        ones every time for the same faces."""
        rows = np.flatnonzero(present)
        if len(rows) > MAX_ANCHORS:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, MAX_ANCHORS, replace=False))
        return rows

    def own_centres(self, anchors: np.ndarray) -> dict[str, np.ndarray]:
        """Per method, the centre of every layout face's neighbours among `anchors`, in the
        layout's own space (kept: the same for every refit against this layout)."""
        key = anchors.tobytes()
        if key not in self._centres:
            self._centres = {
                key: neighbour_centres(
                    self.embeddings, self.embeddings[anchors], {m: c[anchors] for m, c in self.coords.items()}
                )
            }
        return self._centres[key]


def place(layout: Layout, face_ids: np.ndarray, embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """Coordinates per layout method for `face_ids` with their new `embeddings` (n, d)."""
    rows = layout.rows_of(face_ids)
    present = np.zeros(len(layout.face_ids), dtype=bool)
    present[rows[rows >= 0]] = True
    anchors = layout.choose_anchors(present)
    if len(anchors) == 0:
        raise ValueError(f"none of these faces is in the map of run {layout.run_id}")
    anchor_positions = np.full(len(layout.face_ids), -1, dtype=np.int64)
    anchor_positions[rows[rows >= 0]] = np.flatnonzero(rows >= 0)
    current_anchors = embeddings[anchor_positions[anchors]]
    moved = neighbour_centres(embeddings, current_anchors, {m: c[anchors] for m, c in layout.coords.items()})
    before = layout.own_centres(anchors)
    known = rows >= 0
    out = {}
    for method, centres in moved.items():
        coords = centres.copy()  # faces the layout lacks: the centre of their neighbours
        coords[known] = layout.coords[method][rows[known]] + centres[known] - before[method][rows[known]]
        out[method] = coords.astype(np.float32)
    return out


def neighbour_centres(
    queries: np.ndarray, anchors: np.ndarray, anchor_coords: dict[str, np.ndarray], k: int | None = None
) -> dict[str, np.ndarray]:
    """Per method, the mean coordinates of each query's k nearest anchors (Euclidean distance
    of L2-normalised embeddings, i.e. cosine, in a PCA of queries and anchors together)."""
    reduced_queries, reduced_anchors = (torch.from_numpy(x) for x in _reduced(_unit(queries), _unit(anchors)))
    k = min(k or NEIGHBOURS, len(reduced_anchors))
    anchor_norms = (reduced_anchors**2).sum(1)
    nearest = torch.empty((len(reduced_queries), k), dtype=torch.long)
    for start in range(0, len(reduced_queries), CHUNK):
        # + |q|^2 left out: the same for every anchor of a row
        distance = anchor_norms[None, :] - 2 * reduced_queries[start : start + CHUNK] @ reduced_anchors.T
        nearest[start : start + CHUNK] = distance.topk(k, dim=1, largest=False).indices
    nearest_rows = nearest.numpy()
    return {method: coords[nearest_rows].mean(axis=1) for method, coords in anchor_coords.items()}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _reduced(queries: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both projected on the anchors' top principal axes when the embeddings are wide."""
    if anchors.shape[1] <= REDUCED_DIM or len(anchors) <= REDUCED_DIM:
        return queries, anchors
    mean = anchors.mean(axis=0, keepdims=True)
    centred = anchors - mean
    _values, vectors = np.linalg.eigh(centred.T @ centred)  # (d x d): cheaper than an SVD of the anchors
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :REDUCED_DIM], dtype=np.float32)
    return np.ascontiguousarray((queries - mean) @ basis), np.ascontiguousarray(centred @ basis)
