"""The FER2013 benchmark project: all of train (labels kept as hidden truth) and val, imported
once, with the offline encoder's feature cache computed once; every benchmark reuses it.

Usage: python -m bench.fer_project [--root DIR] [--encoder offline] [--strong-views 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench.report import SHARED_DATA
from core.ingest.importer import ImportOptions, import_source
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--encoder", default="offline")
    parser.add_argument("--strong-views", type=int, default=2)
    args = parser.parse_args(argv)
    project = ensure_project(args.root)
    encoder, faces, features, broken, seconds = ensure_features(project, args.encoder, args.strong_views)
    print(f"{len(faces)} faces, features {features.shape}, {len(broken)} unreadable, {seconds:.0f} s "
          f"({encoder.describe()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
