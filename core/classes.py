"""The expression classes, read from core/resources/classes.json, and mapping of other names onto them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from core.resources import resource_path

SKIP = "skip"  # a --map target that drops a source class instead of importing it


@dataclass(frozen=True)
class ExpressionClass:
    index: int
    name: str
    key: str
    color: str
    aliases: tuple[str, ...]


class UnknownClassError(ValueError):
    """A source class name that maps onto none of the expressions."""

    def __init__(self, names: list[str], known: list[str]):
        self.names = names
        self.known = known
        super().__init__(
            f"unknown class name(s): {', '.join(sorted(names))}. "
            f"Known classes: {', '.join(known)} (and aliases such as angry, happy, sad). "
            f"Map others with --map NAME=CLASS (or NAME=skip to leave them out)."
        )


@lru_cache(maxsize=1)
def expression_classes() -> tuple[ExpressionClass, ...]:
    data = json.loads(resource_path("classes.json").read_text(encoding="utf-8"))
    return tuple(
        ExpressionClass(i, c["name"], c["key"], c["color"], tuple(c.get("aliases", ())))
        for i, c in enumerate(data["classes"])
    )


def class_names() -> list[str]:
    return [c.name for c in expression_classes()]


def class_index(name: str) -> int:
    return class_names().index(name)


class ClassMapper:
    """Maps source class names (folder names, CSV labels) onto canonical expression names.

    Matching is case-insensitive over names and aliases; `overrides` (from --map) win and may
    map to SKIP. `resolve` returns the canonical name, SKIP, or raises UnknownClassError.
    """

    def __init__(self, overrides: dict[str, str] | None = None):
        self._lookup: dict[str, str] = {}
        for cls in expression_classes():
            self._lookup[cls.name.lower()] = cls.name
            for alias in cls.aliases:
                self._lookup[alias.lower()] = cls.name
        self._overrides: dict[str, str] = {}
        for source, target in (overrides or {}).items():
            target_key = target.strip().lower()
            if target_key == SKIP:
                self._overrides[source.strip().lower()] = SKIP
            elif target_key in self._lookup:
                self._overrides[source.strip().lower()] = self._lookup[target_key]
            else:
                raise UnknownClassError([target], class_names())

    def try_resolve(self, name: str) -> str | None:
        key = name.strip().lower()
        return self._overrides.get(key) or self._lookup.get(key)

    def resolve(self, name: str) -> str:
        result = self.try_resolve(name)
        if result is None:
            raise UnknownClassError([name], class_names())
        return result

    def check_all(self, names: list[str]) -> None:
        unknown = sorted({n for n in names if self.try_resolve(n) is None})
        if unknown:
            raise UnknownClassError(unknown, class_names())


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """Parse ['smiling=happiness', 'contempt=skip'] into a dict, with a clear error on bad items."""
    mapping: dict[str, str] = {}
    for item in items or []:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"bad --map value {item!r}: expected NAME=CLASS, e.g. smiling=happiness")
        mapping[source.strip()] = target.strip()
    return mapping
