"""How a run's verdict on one face is stored in the `predictions` table, encoded and decoded in
one place.

Each level's class probabilities (semantic, text, instance) and the fused ones are JSON lists in
class order, rounded to PROBABILITY_DECIMALS; a level the run did not produce is NULL. The
pseudo-label is its class name. `extra` holds the algorithm's own per-face outputs: a boolean
class mask (LEAF's positive set) as the names of the classes in it, anything else as a list.

The trainer (core/training/results.py) and the re-scorer (core/training/rescore.py) encode rows
with `encode_prediction`; the queue's loader (core/active/data.py), the re-scorer and the detail
panel's evidence (core/active/evidence.py) decode them with the `decode_*` functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

LEVELS = ("semantic", "text", "instance")
PROBABILITY_DECIMALS = 5  # enough for every shown number and threshold test; a third of the text


def level_column(level: str) -> str:
    """The column of a level's probabilities: 'semantic' -> 'p_semantic'."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; one of {', '.join(LEVELS)}")
    return f"p_{level}"


def encode_probabilities(values: np.ndarray | Sequence[float] | None) -> list[float] | None:
    """One face's class probabilities as stored (None: the level is absent)."""
    return None if values is None else [round(float(v), PROBABILITY_DECIMALS) for v in values]


def encode_extra(extras: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, list] | None:
    """One face's algorithm outputs (each its row of the output): a boolean class mask as the
    names of its classes, anything else as a list; None when the algorithm has none."""
    if not extras:
        return None
    return {
        key: [names[int(j)] for j in np.flatnonzero(row)] if row.dtype == bool else row.tolist()
        for key, row in extras.items()
    }


def encode_prediction(
    run_id: int,
    face_id: int,
    *,
    fused: np.ndarray,
    pseudo_label: int,
    confidence: float,
    passed: bool,
    names: Sequence[str],
    levels: Mapping[str, np.ndarray | None],
    extras: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """A `predictions` row for an insert, or for an update of the columns it names: the levels
    in `levels` (None: absent) and `extra` where `extras` is given; what is left out keeps its
    stored value on an update."""
    row: dict[str, Any] = {
        "run_id": int(run_id),
        "image_id": int(face_id),
        **{level_column(level): encode_probabilities(values) for level, values in levels.items()},
        "p_fused": encode_probabilities(fused),
        "pseudo_label": names[int(pseudo_label)],
        "confidence": float(confidence),
        "passed_threshold": bool(passed),
    }
    if extras is not None:
        row["extra"] = encode_extra(extras, names)
    return row


def _parsed(value: Any) -> Any:
    # A JSON column comes back parsed, or as its text where it is selected cast to text (the bulk
    # loaders) or on a backend that hands it back unparsed.
    return json.loads(value) if isinstance(value, str) else value


def decode_probabilities(value: Any) -> np.ndarray | None:
    """A stored probability list (parsed, or its JSON text) as an array; None for an absent level."""
    value = _parsed(value)
    return None if value is None else np.asarray(value, dtype=np.float64)


def decode_probability_column(texts: Sequence[str | None], width: int) -> np.ndarray:
    """A whole column selected as text -> an (n, width) array, NaN rows where a face has no list.
    One json.loads for the column: parsing 30,000 rows one by one is what makes a naive load slow."""
    missing = "[" + ",".join(["NaN"] * width) + "]"
    joined = ",".join(missing if text is None or text == "null" else text for text in texts)
    return np.asarray(json.loads("[" + joined + "]"), dtype=np.float64).reshape(len(texts), width)


def decode_extra(value: Any) -> dict[str, Any] | None:
    """The stored `extra` (parsed, or its JSON text); None when there is none."""
    value = _parsed(value)
    return value if isinstance(value, dict) and value else None
