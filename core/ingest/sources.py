"""Turning an import SOURCE (a folder, a CSV manifest or one image file) into a list of items.

A folder is flat (its files are unlabeled) or holds one sub-folder per class (labeled); files
directly in a class folder's sub-folders count for that class. A CSV manifest has a header with
a `path` column and optional `label` and `split` columns; relative paths are relative to the
CSV's folder.

Walking a folder does not leave it through symbolic links unless asked (follow_links): a link
whose target lies outside the source folder becomes an item with a `problem`, reported and never
read. Links that stay inside are followed; a link back to a folder being walked (a loop) is not.
Only regular files are read: a FIFO or a device is an item with a problem, never opened.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from core.classes import SKIP, ClassMapper, UnknownClassError, class_names
from core.ingest.files import NotRegularFile, file_kind, not_regular_reason, open_regular
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
    problem: str | None = None  # why this entry is skipped without being opened


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


class _Walker:
    """Lists a folder tree as items: files to read, and entries skipped with the reason."""

    def __init__(self, root: Path, split: str, follow_links: bool):
        self.root = Path(os.path.realpath(root))
        info = root.stat()
        self.root_key = (info.st_dev, info.st_ino)
        self.split = split
        self.follow_links = follow_links

    def link_problem(self, path: Path) -> str | None:
        """Why the symbolic link `path` is not followed, or None to follow it."""
        target = Path(os.path.realpath(path))
        if self.follow_links or target == self.root or self.root in target.parents:
            return None
        # Worded so the report's summary counts these under one reason, whatever the target.
        return f"symbolic link outside the source folder (to {target}; use --follow-links to include it)"

    def entry(self, path: Path, label: str | None) -> SourceItem | None:
        """The item for one directory entry, or None for a folder to walk into."""
        if path.is_symlink():
            problem = self.link_problem(path)
            if problem:
                return SourceItem(path, label, self.split, problem)
        try:
            mode = path.stat().st_mode
        except OSError:
            return SourceItem(path, label, self.split)  # e.g. a broken link: the reader says so
        if stat.S_ISDIR(mode):
            return None
        return SourceItem(path, label, self.split, not_regular_reason(mode))

    def walk(self, folder: Path, label: str | None, above: tuple[tuple[int, int], ...] = ()) -> list[SourceItem]:
        """The items under `folder`: a folder's files, then its sub-folders, by name (os.walk's
        order). `above`: (device, inode) of the folders it lies in, to stop at a loop."""
        items: list[SourceItem] = []
        stack = [(folder, above)]
        while stack:  # a loop, not recursion: however deep the tree, no RecursionError
            current, above = stack.pop()
            try:
                info = current.stat()
                names = sorted(n for n in os.listdir(current) if not _is_hidden(n))
            except OSError as exc:
                items.append(SourceItem(current, label, self.split, f"cannot list the folder ({exc.strerror or exc})"))
                continue
            key = (info.st_dev, info.st_ino)
            if key in above:
                items.append(
                    SourceItem(
                        current,
                        label,
                        self.split,
                        f"symbolic link loop (to {os.path.realpath(current)}, a folder that contains it; not followed)",
                    )
                )
                continue
            subfolders = []
            for name in names:
                item = self.entry(current / name, label)
                if item is None:
                    subfolders.append((current / name, above + (key,)))
                else:
                    items.append(item)
            stack.extend(reversed(subfolders))
        return items


def enumerate_source(
    source: str | os.PathLike,
    *,
    split: str,
    mapper: ClassMapper,
    ignore_folder_names: bool = False,
    follow_links: bool = False,
) -> list[SourceItem]:
    if split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    path = Path(source).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        walker = _Walker(path, split, follow_links)
        return _enumerate_folder(path, walker, mapper, ignore_folder_names)
    if not stat.S_ISREG(mode):
        raise SourceError(
            f"{path}: not a regular file ({file_kind(mode)}); the source must be a "
            f"folder, a CSV manifest or an image file"
        )
    if path.suffix.lower() in (".csv", ".tsv"):
        return _enumerate_csv(path, split, mapper)
    return [SourceItem(path, None, split)]


def _enumerate_folder(
    folder: Path, walker: _Walker, mapper: ClassMapper, ignore_folder_names: bool
) -> list[SourceItem]:
    if ignore_folder_names:
        return walker.walk(folder, None)
    try:
        entries = sorted(e for e in folder.iterdir() if not _is_hidden(e.name))
    except OSError as exc:
        raise SourceError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None
    items: list[SourceItem] = []
    subfolders: list[Path] = []
    for path in entries:
        item = walker.entry(path, None)
        if item is None:
            subfolders.append(path)
        else:
            items.append(item)  # a file directly in SOURCE (unlabeled), or a link not followed
    unknown = sorted(d.name for d in subfolders if mapper.try_resolve(d.name) is None)
    if unknown:
        raise SourceError(
            f"{folder}: {UnknownClassError(unknown, class_names())} "
            f"To import a folder tree without labels, use --unlabeled."
        )
    for sub in subfolders:
        label = mapper.resolve(sub.name)
        if label != SKIP:
            items.extend(walker.walk(sub, label, (walker.root_key,)))
    return items


def _find_column(header: list[str], candidates: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in candidates:
        if name in lowered:
            return lowered.index(name)
    return None


def _enumerate_csv(csv_path: Path, split: str, mapper: ClassMapper) -> list[SourceItem]:
    try:
        handle, _size = open_regular(csv_path)  # never blocks on a FIFO swapped in since the stat
        with io.TextIOWrapper(handle, encoding="utf-8-sig") as stream:  # read_text's newlines
            text = stream.read()
    except UnicodeDecodeError as exc:
        raise SourceError(f"{csv_path}: not UTF-8 text (byte {exc.start}); save the manifest as UTF-8") from None
    except NotRegularFile as exc:
        raise SourceError(f"{csv_path}: {exc}") from None
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
            f"must name the columns, e.g. 'path,label' (path column: one of {', '.join(PATH_COLUMNS)})"
        )
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
    for _line, file_cell, given_label, row_split in parsed:
        canonical = mapper.resolve(given_label) if given_label else None
        if canonical == SKIP:
            continue
        path = Path(file_cell).expanduser()
        items.append(SourceItem(path if path.is_absolute() else base / path, canonical, row_split))
    return items
