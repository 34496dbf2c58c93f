"""The FER2013 benchmark project: all of train (labels kept as hidden truth) and val, imported
once, with the offline encoder's feature cache computed once; every benchmark reuses it.

Usage: python -m bench.fer_project [--root DIR] [--encoder offline] [--strong-views 2]
       python -m bench.fer_project --studio-copy DIR [--labeled-per-class 25] [--seed 0]

--studio-copy makes a studio project of the same faces, as an annotator would start one: the
benchmark project copied with its feature cache (so training needs no encoder pass), and N train
faces per class labeled from the hidden truth; then `python main.py train DIR` trains on it
(docs/benchmarks.md, review queue build times).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from bench.report import SHARED_DATA
from core.classes import class_names
from core.encoders.base import Encoder
from core.encoders.text import class_text_embeddings, load_descriptions
from core.ingest.importer import ImportOptions, import_source
from core.store.models import HiddenTruth
from core.store.project import Project
from core.training.data import load_face_table

DEFAULT_ROOT = Path(os.environ.get("FER_BENCH_PROJECT", "/tmp/fer-bench-project"))


def ensure_project(root: Path = DEFAULT_ROOT) -> Project:
    """Import FER2013 train (every label hidden: the protocol picks labeled faces per seed) and val."""
    if Project.is_project(root):
        return Project.open(root)
    source = SHARED_DATA / "fer2013"
    if not (source / "train").is_dir():
        raise SystemExit(f"skipped: FER2013 not found at {source} (set FER_SHARED_DATA)")
    project = Project.create(root)
    # keep 0 labels: all train truth goes to hidden_truth; benchmarks draw their labeled sets from it.
    import_source(project, source / "train", ImportOptions(split="train", keep_labels_per_class=0))
    import_source(project, source / "val", ImportOptions(split="val"))
    return project


def ensure_features(project: Project, encoder_spec: str = "offline", strong_views: int = 2):
    from core.encoders import get_encoder
    from core.training.features import FeatureCache

    encoder = get_encoder(encoder_spec)
    with project.session() as session:
        faces = load_face_table(project, session)
    cache = FeatureCache(project.cache_dir("features"), encoder, strong_views, seed=0)
    started = time.perf_counter()
    last = [0.0]

    def progress(done, total):
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"features {done}/{total} ({rate:.1f} faces/s)", flush=True)

    features, broken = cache.load(faces, progress=progress)
    return encoder, faces, features, broken, time.perf_counter() - started


def hidden_labels(project: Project, faces) -> np.ndarray:
    """Each face's hidden class index (-1 where none): the benchmarks' ground truth."""
    index = {name: i for i, name in enumerate(class_names())}
    with project.session() as session:
        truth = dict(session.execute(select(HiddenTruth.image_id, HiddenTruth.label)).all())
    return np.array([index[truth[int(i)]] if int(i) in truth else -1 for i in faces.ids], dtype=np.int64)


@dataclass
class BenchmarkData:
    """What every FER2013 benchmark trains and evaluates on: train rows with hidden truth
    (row i is memory-bank slot i) and val's view-0 features with their labels."""

    encoder: Encoder
    class_text: torch.Tensor
    features: np.ndarray  # (train faces, views, dim)
    truth: np.ndarray
    ids: np.ndarray
    val_x: torch.Tensor
    val_y: np.ndarray
    feature_seconds: float
    # With geometry=True: the same rows with the face-mesh geometry appended (core/training/geometry.py).
    features_geometry: np.ndarray | None = None
    val_x_geometry: torch.Tensor | None = None
    mesh_seconds: float = 0.0
    meshes_missing: dict[str, int] | None = None  # faces without a mesh, by split


def ensure_meshes(project: Project, faces):
    """The face meshes of every face (computed once into the project's landmark cache)."""
    from core.training.geometry import LandmarkCache

    started = time.perf_counter()
    last = [started]

    def progress(done, total):
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"meshes {done}/{total} ({done / max(last[0] - started, 1e-9):.1f} faces/s)", flush=True)

    meshes = LandmarkCache(project.cache_dir("features")).load(faces, progress=progress)
    return meshes, time.perf_counter() - started


def load_benchmark_data(
    root: Path, encoder_spec: str, strong_views: int, text_cache: Path | None, geometry: bool = False
) -> BenchmarkData:
    project = ensure_project(root)
    encoder, faces, features_all, broken, feature_seconds = ensure_features(project, encoder_spec, strong_views)
    class_text = class_text_embeddings(encoder, load_descriptions(), text_cache or project.cache_dir("features"))
    truth_all = hidden_labels(project, faces)
    usable = np.ones(len(faces), bool)
    usable[broken] = False
    train_rows = np.flatnonzero((faces.splits == "train") & usable & (truth_all >= 0))
    val_rows = np.flatnonzero((faces.splits == "val") & usable & (faces.labels >= 0))
    data = BenchmarkData(
        encoder,
        class_text,
        features_all[train_rows],
        truth_all[train_rows],
        faces.ids[train_rows],
        torch.from_numpy(features_all[val_rows, 0]),
        faces.labels[val_rows],
        feature_seconds,
    )
    if geometry:
        from core.training.geometry import with_geometry

        meshes, data.mesh_seconds = ensure_meshes(project, faces)
        combined = with_geometry(features_all, meshes)
        data.features_geometry = combined[train_rows]
        data.val_x_geometry = torch.from_numpy(combined[val_rows, 0])
        data.meshes_missing = {
            split: int((~meshes.found[rows, 0]).sum()) for split, rows in (("train", train_rows), ("val", val_rows))
        }
    return data


def make_studio_copy(root: Path, dest: Path, per_class: int, seed: int) -> dict[str, int]:
    """Copy the benchmark project to `dest` and label `per_class` train faces per class from the
    hidden truth (the benchmarks' seeded draw), through the corrections log as an annotator would."""
    from bench.ssl_benchmark import labeled_subset  # bench.ssl_benchmark imports this module
    from core.labeling import bulk_label

    if dest.exists():
        raise SystemExit(f"{dest} exists: give a new folder for the studio copy")
    ensure_project(root).close()
    shutil.copytree(root, dest)
    project = Project.open(dest)
    try:
        with project.session() as session:
            faces = load_face_table(project, session)
        truth = hidden_labels(project, faces)
        train = np.flatnonzero((faces.splits == "train") & (truth >= 0))
        drawn = labeled_subset(truth[train], faces.ids[train], per_class, seed)
        labeled = {}
        for index, name in enumerate(class_names()):
            chosen = faces.ids[train][drawn == index]
            bulk_label(project, [int(i) for i in chosen], name, "benchmark")
            labeled[name] = len(chosen)
        return labeled
    finally:
        project.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--encoder", default="offline")
    parser.add_argument("--strong-views", type=int, default=2)
    parser.add_argument(
        "--studio-copy",
        type=Path,
        metavar="DIR",
        help="copy the project to DIR with --labeled-per-class train faces per class labeled",
    )
    parser.add_argument("--labeled-per-class", type=int, help="with --studio-copy (default 25)")
    parser.add_argument("--seed", type=int, help="with --studio-copy: which faces it labels (default 0)")
    args = parser.parse_args(argv)
    if not args.studio_copy and (args.labeled_per_class is not None or args.seed is not None):
        parser.error("--labeled-per-class and --seed only apply to --studio-copy")
    if args.studio_copy:
        per_class = 25 if args.labeled_per_class is None else args.labeled_per_class
        labeled = make_studio_copy(args.root, args.studio_copy, per_class, args.seed or 0)
        print(
            f"{args.studio_copy}: labeled {sum(labeled.values())} train faces ({labeled}); next: "
            f"python main.py train {args.studio_copy}"
        )
        return 0
    project = ensure_project(args.root)
    encoder, faces, features, broken, seconds = ensure_features(project, args.encoder, args.strong_views)
    print(
        f"{len(faces)} faces, features {features.shape}, {len(broken)} unreadable, {seconds:.0f} s "
        f"({encoder.describe()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
