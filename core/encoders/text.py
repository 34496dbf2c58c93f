"""Class descriptions and their text-tower embeddings t_c, computed once and cached.

t_c = normalise(mean of the normalised embeddings of class c's descriptions), in class_names()
order. A project may keep its own edited copy of the descriptions (descriptions_for_project).
The cache file is keyed by the encoder's cache_key and a hash of the descriptions, so
editing a description recomputes it and switching back reuses the old file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core.classes import class_names
from core.resources import resource_path

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DESCRIPTIONS_FILE = "descriptions.json"
DESCRIPTIONS_HISTORY = "descriptions-history"  # earlier project copies, one file per save


def load_descriptions(path: Path | None = None) -> dict[str, list[str]]:
    """{class: [description, ...]} in class order; keys starting with '_' are comments.

    Raises ValueError naming the file and the problem.
    """
    path = Path(path) if path is not None else resource_path(DESCRIPTIONS_FILE)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read descriptions file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"descriptions file {path} is not valid JSON: {exc}") from None
    return check_descriptions(data, f"descriptions file {path}")


def check_descriptions(data, where: str = "descriptions") -> dict[str, list[str]]:
    """Validate {class: [description, ...]} (comment keys '_...' ignored) and return it in class
    order with the texts stripped; ValueError starting with `where` says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object {{class: [descriptions]}}")
    names = class_names()
    entries = {k: v for k, v in data.items() if not str(k).startswith("_")}
    unknown = sorted(set(entries) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown class(es) {', '.join(unknown)}; the classes are {', '.join(names)}")
    missing = [n for n in names if n not in entries]
    if missing:
        raise ValueError(f"{where}: no descriptions for {', '.join(missing)}")
    result: dict[str, list[str]] = {}
    for name in names:
        texts = entries[name]
        if not isinstance(texts, list) or not texts:
            raise ValueError(f"{where}: '{name}' must be a non-empty list of strings")
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"{where}: '{name}' has an empty or non-string description")
        result[name] = [t.strip() for t in texts]
    return result


# -- a project's own descriptions ----------------------------------------------------------------
def project_descriptions_path(project_root: Path) -> Path:
    """Where a project keeps its edited descriptions (the studio's description editor)."""
    return Path(project_root) / DESCRIPTIONS_FILE


def descriptions_for_project(project_root: Path) -> tuple[dict[str, list[str]], Path]:
    """The descriptions a project trains with and the file they came from: the project's own
    copy when it has one, else core/resources/descriptions.json."""
    own = project_descriptions_path(project_root)
    if own.is_file():
        return load_descriptions(own), own
    return load_descriptions(), resource_path(DESCRIPTIONS_FILE)


def save_project_descriptions(project_root: Path, descriptions: dict[str, list[str]]) -> Path:
    """Validate and write the project's own descriptions (atomically). The copy it replaces is
    kept in descriptions-history/, so no saved wording is ever lost."""
    checked = check_descriptions(descriptions, "the new descriptions")
    target = project_descriptions_path(project_root)
    if target.is_file():
        history = Path(project_root) / DESCRIPTIONS_HISTORY
        history.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        shutil.copy2(target, history / f"descriptions-{stamp}.json")
    data = {
        "_comment": "This project's class descriptions for the text level (edited in the studio); "
        "they replace core/resources/descriptions.json for this project.",
        **checked,
    }
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)  # atomic: a crash leaves the old file or the new one, never half of one
    return target


def descriptions_digest(descriptions: dict[str, list[str]]) -> str:
    # The class order is part of the key: t_c rows follow it.
    canonical = json.dumps(
        {"classes": class_names(), "descriptions": descriptions},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def compute_class_embeddings(encoder, descriptions: dict[str, list[str]]) -> torch.Tensor:
    import torch  # here, not at the top: the description editor reads and saves without torch

    names = class_names()
    texts = [t for name in names for t in descriptions[name]]
    embedded = encoder.encode_texts(texts).float().cpu()  # one call: batching is the encoder's job
    embedded = torch.nn.functional.normalize(embedded, dim=1)
    rows, start = [], 0
    for name in names:
        count = len(descriptions[name])
        rows.append(embedded[start : start + count].mean(0))
        start += count
    return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def class_text_embeddings(
    encoder, descriptions: dict[str, list[str]] | None = None, cache_dir: Path | None = None
) -> torch.Tensor:
    """(n_classes, text_dim) float32 on the CPU; cached in cache_dir when one is given."""
    import torch

    descriptions = descriptions if descriptions is not None else load_descriptions()
    n_classes = len(class_names())
    if cache_dir is None:
        return compute_class_embeddings(encoder, descriptions)
    cache_dir = Path(cache_dir)
    path = cache_dir / f"text-{encoder.cache_key}-{descriptions_digest(descriptions)[:20]}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(cached, torch.Tensor) and tuple(cached.shape) == (n_classes, encoder.text_dim):
                return cached.float()
        except Exception:  # noqa: BLE001 - a damaged cache file is simply recomputed
            pass
        log.warning("text embedding cache %s unusable; recomputing", path)
    embeddings = compute_class_embeddings(encoder, descriptions)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(embeddings, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache file
    return embeddings
