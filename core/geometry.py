"""Which 2-D points lie inside a rectangle or a freehand polygon (the embedding map's selections).

Vectorised over the points with numpy, so a lasso over 30,000 faces costs milliseconds; Qt-free
so the selection rules are tested on known coordinates without a window.
"""

from __future__ import annotations

import numpy as np


def points_in_rect(xy: np.ndarray, corner_a, corner_b) -> np.ndarray:
    """Boolean mask of the points inside (or on the edge of) the rectangle spanned by two corners."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    (x0, y0), (x1, y1) = corner_a, corner_b
    lo_x, hi_x = min(x0, x1), max(x0, x1)
    lo_y, hi_y = min(y0, y1), max(y0, y1)
    return (xy[:, 0] >= lo_x) & (xy[:, 0] <= hi_x) & (xy[:, 1] >= lo_y) & (xy[:, 1] <= hi_y)


def points_in_polygon(xy: np.ndarray, polygon) -> np.ndarray:
    """Boolean mask of the points inside a closed polygon (even-odd rule, the last vertex joins
    the first). Fewer than three vertices enclose nothing."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(len(xy), dtype=bool)
    if len(poly) < 3 or not len(xy):
        return inside
    # Only points within the polygon's bounding box can be inside: test just those.
    candidates = points_in_rect(xy, poly.min(axis=0), poly.max(axis=0))
    px, py = xy[candidates, 0], xy[candidates, 1]
    hit = np.zeros(len(px), dtype=bool)
    xi, yi = poly[:, 0], poly[:, 1]
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    for ax, ay, bx, by in zip(xi, yi, xj, yj):
        straddles = (ay > py) != (by > py)
        if not straddles.any() or ay == by:
            continue
        crossing_x = (bx - ax) * (py - ay) / (by - ay) + ax
        hit ^= straddles & (px < crossing_x)
    inside[candidates] = hit
    return inside
