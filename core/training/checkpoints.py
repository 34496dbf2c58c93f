"""Checkpoint files: written as plain data and read back with torch's weights-only loader.

A checkpoint holds only tensors, lists, tuples, dicts, strings, numbers, booleans and None, so
`torch.load(..., weights_only=True)` reads it and a pickled payload in a tampered or foreign
file is refused instead of run. The "format" entry tells our checkpoints from other files;
those of earlier versions (a numpy array inside, no format entry) are refused like any other.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path

import torch

CHECKPOINT_FORMAT = 2  # earlier checkpoints had no format entry and pickled numpy arrays
REQUIRED = ("step", "model", "ema", "optimizer", "scheduler", "algorithm", "source", "train_face_ids")
_SCALARS = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A checkpoint that was not loaded (or cannot be written); the message names the file."""


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` atomically: a crash mid-save keeps the previous checkpoint."""
    state = {**state, "format": CHECKPOINT_FORMAT}
    _check_plain(state, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location=None) -> dict:
    """The checkpoint at `path`, read without executing anything it holds; CheckpointError if it
    is unreadable, not ours, modified, or of an earlier format."""
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} could not be read: {exc.strerror or exc}") from None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:  # a readable file that torch cannot make sense of: cut short or damaged
        raise CheckpointError(_refusal(path, f"it is damaged or incomplete ({exc.strerror or exc})")) from None
    except Exception as exc:  # noqa: BLE001 - the safe unpickler's refusal, a damaged zip, not a torch file at all
        raise CheckpointError(_refusal(path, _reason(exc))) from None
    if not isinstance(state, dict):
        raise CheckpointError(_refusal(path, f"it holds a {type(state).__name__}, not a checkpoint's entries"))
    if state.get("format") != CHECKPOINT_FORMAT:
        found = "it has no format entry" if "format" not in state else f"its format is {state['format']!r}"
        raise CheckpointError(_refusal(path, f"{found}, not {CHECKPOINT_FORMAT}"))
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(_refusal(path, f"it lacks {', '.join(missing)}"))
    return state


def _refusal(path, reason: str) -> str:
    return (
        f"{path} is not a FER studio checkpoint or was modified: {reason}; it was not loaded "
        f"(checkpoints from earlier versions of FER studio are refused too: start a new run)"
    )


def _reason(exc: Exception) -> str:
    """torch's long weights-only message cut to what was wrong."""
    text = str(exc)
    wanted = re.search(r"GLOBAL ([\w.]+)", text)
    if wanted:
        return f"it asks to call or build {wanted.group(1)}, which a checkpoint never does"
    text = text.split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # torch's advice around the cause (weights_only, the documentation link) is left out
    cause = [line for line in lines if "weights_only" not in line.lower() and not line.startswith("Check the doc")]
    first = (cause or lines or ["no details"])[0].split(". ")[0]
    return f"{type(exc).__name__}: {first[:200]}"


def _check_plain(value, where: str) -> None:
    """Raise for anything the weights-only loader would refuse, so a bad checkpoint fails when
    it is written (in tests) rather than when a resume needs it."""
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            _check_plain(key, where)
            _check_plain(item, f"{where}[{key!r}]")
    elif type(value) in (list, tuple, torch.Size):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (type(value) in _SCALARS or isinstance(value, torch.Tensor)):  # numpy's float64 is no float here
        raise CheckpointError(
            f"{where} is a {type(value).__module__}.{type(value).__name__}, which a checkpoint "
            f"cannot hold (tensors, lists, dicts, strings and numbers only)"
        )
