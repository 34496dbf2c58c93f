"""Turning an import SOURCE (a folder, a CSV manifest or one image file) into a list of items.

A folder is flat (its files are unlabeled) or holds one sub-folder per class (labeled); files
directly in a class folder's sub-folders count for that class. A CSV manifest has a header with
a `path` column and optional `label` and `split` columns; relative paths are relative to the
CSV's folder.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from core.classes import SKIP, ClassMapper, UnknownClassError, class_names
from core.store.models import SPLITS

PATH_COLUMNS = ("path", "file", "filename", "image", "filepath")
LABEL_COLUMNS = ("label", "expression", "class", "emotion")
SPLIT_COLUMN = "split"


class SourceError(ValueError):
    """A source that cannot be imported at all; the message names it and says why."""


@dataclass(frozen=True)
class SourceItem:
    path: Path
    label: str | None  # canonical class name, or None for unlabeled
    split: str


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


def _walk_files(folder: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not _is_hidden(f))
    return files


def enumerate_source(source: str | os.PathLike, *, split: str, mapper: ClassMapper,
                     ignore_folder_names: bool = False) -> list[SourceItem]:
    if split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        return _enumerate_folder(path, split, mapper, ignore_folder_names)
    if path.suffix.lower() in (".csv", ".tsv"):
        return _enumerate_csv(path, split, mapper)
    return [SourceItem(path, None, split)]


def _enumerate_folder(folder: Path, split: str, mapper: ClassMapper,
                      ignore_folder_names: bool) -> list[SourceItem]:
    try:
        entries = sorted(e for e in folder.iterdir() if not _is_hidden(e.name))
    except OSError as exc:
        raise SourceError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None
    if ignore_folder_names:
        return [SourceItem(p, None, split) for p in _walk_files(folder)]
    subfolders = [e for e in entries if e.is_dir()]
    unknown = sorted(d.name for d in subfolders if mapper.try_resolve(d.name) is None)
    if unknown:
        raise SourceError(
            f"{folder}: {UnknownClassError(unknown, class_names())} "
            f"To import a folder tree without labels, use --unlabeled.")
    items = [SourceItem(e, None, split) for e in entries if e.is_file()]
    for sub in subfolders:
        label = mapper.resolve(sub.name)
        if label == SKIP:
            continue
        items.extend(SourceItem(p, label, split) for p in _walk_files(sub))
    return items


def _find_column(header: list[str], candidates: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in candidates:
        if name in lowered:
            return lowered.index(name)
    return None


def _enumerate_csv(csv_path: Path, split: str, mapper: ClassMapper) -> list[SourceItem]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{csv_path}: not UTF-8 text (byte {exc.start}); save the manifest as UTF-8") from None
    except OSError as exc:
        raise SourceError(f"{csv_path}: cannot read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise SourceError(f"{csv_path}: binary data in a CSV manifest")
    delimiter = "\t" if csv_path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise SourceError(f"{csv_path}:{reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise SourceError(f"{csv_path}: the manifest is empty")
    header_line, header = rows[0]
    path_col = _find_column(header, PATH_COLUMNS)
    if path_col is None:
        raise SourceError(
            f"{csv_path}:{header_line}: no path column in the header {header!r}; the first line "
            f"must name the columns, e.g. 'path,label' (path column: one of {', '.join(PATH_COLUMNS)})")
    label_col = _find_column(header, LABEL_COLUMNS)
    split_col = _find_column(header, (SPLIT_COLUMN,))
    base = csv_path.parent
    parsed: list[tuple[int, str, str | None, str]] = []
    unknown: set[str] = set()
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise SourceError(f"{csv_path}:{line}: expected {len(header)} fields like the header, found {len(row)}")
        file_cell = row[path_col].strip()
        if not file_cell:
            raise SourceError(f"{csv_path}:{line}: empty path")
        label = row[label_col].strip() if label_col is not None else ""
        row_split = row[split_col].strip().lower() if split_col is not None and row[split_col].strip() else split
        if row_split not in SPLITS:
            raise SourceError(f"{csv_path}:{line}: unknown split {row_split!r}; use one of {', '.join(SPLITS)}")
        if label and mapper.try_resolve(label) is None:
            unknown.add(label)
        parsed.append((line, file_cell, label or None, row_split))
    if unknown:
        raise SourceError(f"{csv_path}: {UnknownClassError(sorted(unknown), class_names())}")
    items: list[SourceItem] = []
    for _line, file_cell, label, row_split in parsed:
        canonical = mapper.resolve(label) if label else None
        if canonical == SKIP:
            continue
        path = Path(file_cell).expanduser()
        items.append(SourceItem(path if path.is_absolute() else base / path, canonical, row_split))
    return items
