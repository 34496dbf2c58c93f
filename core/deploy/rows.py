"""One predicted face as a row, and prediction tables as CSV or JSON (torch-free: the studio's
Predict view reads and saves them).

A row is a face found in a file: its box in the file's pixels, the fused class probabilities,
each level's prediction where the run has that level. A file that could not be read, or in which
no face was found, is a row too, with `error` saying why and no prediction.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.classes import class_names

LEVEL_NAMES = ("semantic", "text", "instance")
TABLE_FORMATS = (".csv", ".json")
BASE_COLUMNS = (
    "source",
    "face",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "angle",
    "label",
    "predicted",
    "confidence",
    "passed",
)


class TableError(ValueError):
    """A prediction table that cannot be written or read; the message names the file."""


@dataclass
class PredictedFace:
    source: str  # the file, as found (absolute where it was given so)
    face: int | None = None  # the face's index in its file, largest first; None: no face
    box: tuple[int, int, int, int] | None = None  # x, y, w, h in the file's pixels; None: the whole image
    angle: float | None = None  # degrees the crop was turned to level the eyes
    label: str | None = None  # the label its source gave (a class folder, a manifest's column)
    predicted: str | None = None
    confidence: float | None = None
    passed: bool | None = None  # confidence at or above the predicted class's threshold
    fused: dict[str, float] | None = None  # class -> probability, in class order
    levels: dict[str, dict[str, float]] = field(default_factory=dict)  # level -> class -> probability
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.fused is not None

    def level_prediction(self, level: str) -> tuple[str, float] | None:
        probs = self.levels.get(level)
        if not probs:
            return None
        name = max(probs, key=lambda c: probs[c])
        return name, probs[name]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "face": self.face,
            "box": list(self.box) if self.box is not None else None,
            "angle": self.angle,
            "label": self.label,
            "predicted": self.predicted,
            "confidence": self.confidence,
            "passed": self.passed,
            "fused": self.fused,
            "levels": self.levels,
            "error": self.error,
        }

    @staticmethod
    def from_dict(data: dict) -> PredictedFace:
        box = data.get("box")
        return PredictedFace(
            source=str(data["source"]),
            face=_int_or_none(data.get("face")),
            box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])) if box else None,
            angle=_float_or_none(data.get("angle")),
            label=data.get("label") or None,
            predicted=data.get("predicted") or None,
            confidence=_float_or_none(data.get("confidence")),
            passed=data.get("passed"),
            fused={str(k): float(v) for k, v in data["fused"].items()} if data.get("fused") else None,
            levels={
                str(level): {str(k): float(v) for k, v in probs.items()}
                for level, probs in (data.get("levels") or {}).items()
            },
            error=data.get("error") or None,
        )


@dataclass
class PredictionTable:
    run_id: int | None
    classes: list[str]
    levels: list[str]  # the run's levels that the rows carry
    faces: list[PredictedFace]

    def columns(self) -> list[str]:
        level_columns = [name for level in self.levels for name in (level, f"{level}_confidence")]
        return [*BASE_COLUMNS, *(f"p_{c}" for c in self.classes), *level_columns, "error"]

    def summary(self) -> dict:
        """Counts for a report: files, faces predicted, files with an error, faces per class."""
        predicted = [f for f in self.faces if f.ok]
        per_class = {c: sum(1 for f in predicted if f.predicted == c) for c in self.classes}
        return {
            "files": len({f.source for f in self.faces}),
            "faces": len(predicted),
            "errors": sum(1 for f in self.faces if f.error),
            "per_class": per_class,
        }


def csv_row(table: PredictionTable, face: PredictedFace) -> list[str]:
    box = face.box or (None, None, None, None)
    cells = [
        face.source,
        _cell(face.face),
        *(_cell(v) for v in box),
        _cell(face.angle),
        face.label or "",
        face.predicted or "",
        _number(face.confidence),
        "" if face.passed is None else ("1" if face.passed else "0"),
    ]
    cells += [_number(face.fused.get(c)) if face.fused else "" for c in table.classes]
    for level in table.levels:
        pick = face.level_prediction(level)
        cells += [pick[0], _number(pick[1])] if pick else ["", ""]
    cells.append(face.error or "")
    return cells


def write_table(table: PredictionTable, path: str | os.PathLike) -> Path:
    """The table as CSV or JSON (by the suffix), written to a temporary file and moved into place,
    so an interrupted write never leaves half a table under the name."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise TableError(f"{target}: a prediction table is .csv or .json, not {suffix or 'a file without a suffix'!r}")
    text = table_json(table) if suffix == ".json" else table_csv(table)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TableError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target


def table_csv(table: PredictionTable) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns())
    for face in table.faces:
        writer.writerow(csv_row(table, face))
    return out.getvalue()


def table_json(table: PredictionTable) -> str:
    data = {
        "run": table.run_id,
        "classes": table.classes,
        "levels": table.levels,
        "summary": table.summary(),
        "faces": [f.to_dict() for f in table.faces],
    }
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def read_table(path: str | os.PathLike) -> PredictionTable:
    """A table written by write_table (CSV or JSON), or TableError naming the file and the problem."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"{source}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return _parse_json(text) if source.suffix.lower() == ".json" else _parse_csv(text)
    except (KeyError, TypeError, ValueError, IndexError, csv.Error) as exc:
        raise TableError(f"{source}: not a prediction table ({type(exc).__name__}: {exc})") from None


def _parse_json(text: str) -> PredictionTable:
    data = json.loads(text)
    return PredictionTable(
        run_id=_int_or_none(data.get("run")),
        classes=[str(c) for c in data["classes"]],
        levels=[str(level) for level in data.get("levels", [])],
        faces=[PredictedFace.from_dict(f) for f in data["faces"]],
    )


def _parse_csv(text: str) -> PredictionTable:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if "source" not in header:
        raise ValueError("no 'source' column")
    classes = [c[2:] for c in header if c.startswith("p_")] or class_names()
    levels = [level for level in LEVEL_NAMES if level in header]
    faces = []
    for row in reader:
        box_cells = [row.get(k, "") for k in ("box_x", "box_y", "box_w", "box_h")]
        fused = {c: float(row[f"p_{c}"]) for c in classes if row.get(f"p_{c}")}
        level_probs = {}
        for level in levels:  # a CSV keeps each level's pick only: its class and confidence
            if row.get(level):
                level_probs[level] = {row[level]: float(row.get(f"{level}_confidence") or "nan")}
        faces.append(
            PredictedFace(
                source=row["source"],
                face=_int_or_none(row.get("face")),
                box=(int(box_cells[0]), int(box_cells[1]), int(box_cells[2]), int(box_cells[3]))
                if all(box_cells)
                else None,
                angle=_float_or_none(row.get("angle")),
                label=row.get("label") or None,
                predicted=row.get("predicted") or None,
                confidence=_float_or_none(row.get("confidence")),
                passed=None if not row.get("passed") else row["passed"] == "1",
                fused=fused or None,
                levels=level_probs,
                error=row.get("error") or None,
            )
        )
    return PredictionTable(None, classes, levels, faces)


def probabilities(classes: Sequence[str], values: Iterable[float]) -> dict[str, float]:
    """{class: probability} rounded to 6 decimals, in class order."""
    return {c: round(float(v), 6) for c, v in zip(classes, values)}


def _cell(value) -> str:
    return "" if value is None else str(value)


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6f}"


def _int_or_none(value) -> int | None:
    return None if value in (None, "") else int(value)


def _float_or_none(value) -> float | None:
    return None if value in (None, "") else float(value)
