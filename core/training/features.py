"""Head mode's feature cache: encoder features of every face and a few augmented views,
computed once per (encoder, view recipe) and kept in the project's features/ folder.

Shards of SHARD faces (by face id) are separate .npz files, so new faces only cost their own
shard, and a crash mid-way loses at most the shard being written.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.ingest.imageio import ImageProblem, load_face
from core.training.augment import cached_views
from core.training.data import FaceTable

VIEW_RECIPE = 1  # bump when cached_views changes, so old caches are not reused
SHARD = 2048
ENCODE_BATCH = 64


class FeatureCache:
    def __init__(self, root: Path, encoder, n_strong: int = 4, seed: int = 0):
        self.encoder = encoder
        self.n_strong = n_strong
        self.seed = seed
        self.views = 2 + n_strong
        self.folder = Path(root) / encoder.cache_key / f"r{VIEW_RECIPE}-v{self.views}-s{seed}"

    def _shard_path(self, shard: int) -> Path:
        return self.folder / f"shard_{shard:06d}.npz"

    def _read_shard(self, shard: int) -> dict[int, np.ndarray]:
        path = self._shard_path(shard)
        if not path.is_file():
            return {}
        try:
            with np.load(path) as data:
                return {int(i): f for i, f in zip(data["ids"], data["features"])}
        except Exception:
            return {}  # a damaged shard is recomputed

    def _write_shard(self, shard: int, entries: dict[int, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ids = np.array(sorted(entries), dtype=np.int64)
        tmp = self.folder / f".shard_{shard:06d}.{os.getpid()}.tmp.npz"
        np.savez(tmp, ids=ids, features=np.stack([entries[i] for i in ids]))
        os.replace(tmp, self._shard_path(shard))

    def load(self, faces: FaceTable, rows: np.ndarray | None = None,
             progress: Callable[[int, int], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, list[int]]:
        """Features (len(rows), views, dim) as float16, computing what is missing.

        Returns the array and the positions (into `rows`) of faces whose image could not be
        read; their features are zeros and the caller leaves them out.
        """
        rows = np.arange(len(faces)) if rows is None else rows
        out = np.zeros((len(rows), self.views, self.encoder.image_dim), dtype=np.float16)
        broken: list[int] = []
        by_shard: dict[int, list[int]] = {}
        for position, row in enumerate(rows):
            by_shard.setdefault(int(faces.ids[row]) // SHARD, []).append(position)
        missing_total = 0
        cached: dict[int, dict[int, np.ndarray]] = {}
        for shard, positions in by_shard.items():
            cached[shard] = self._read_shard(shard)
            missing_total += sum(int(faces.ids[rows[p]]) not in cached[shard] for p in positions)
        done = 0
        for shard, positions in sorted(by_shard.items()):
            entries = cached[shard]
            missing = [p for p in positions if int(faces.ids[rows[p]]) not in entries]
            for start in range(0, len(missing), ENCODE_BATCH):
                if should_stop and should_stop():
                    raise InterruptedError("stopped while computing features")
                chunk = missing[start:start + ENCODE_BATCH]
                computed, failed = self._encode(faces, [int(rows[p]) for p in chunk])
                for p, features in zip(chunk, computed):
                    if features is not None:
                        entries[int(faces.ids[rows[p]])] = features
                broken.extend(chunk[i] for i in failed)
                done += len(chunk)
                if progress:
                    progress(done, missing_total)
            if missing:
                self._write_shard(shard, entries)
            for p in positions:
                face_id = int(faces.ids[rows[p]])
                if face_id in entries:
                    out[p] = entries[face_id]
        return out, sorted(set(broken))

    @torch.no_grad()
    def _encode(self, faces: FaceTable, rows: list[int]) -> tuple[list[np.ndarray | None], list[int]]:
        images, owners, failed = [], [], []
        for i, row in enumerate(rows):
            try:
                face = load_face(faces.paths[row], faces.crop_paths[row], faces.boxes[row])
            except ImageProblem:
                failed.append(i)
                continue
            views = cached_views(face, int(faces.ids[row]), self.seed, self.n_strong)
            images.extend(views)
            owners.append(i)
        results: list[np.ndarray | None] = [None] * len(rows)
        if images:
            batch = self.encoder.preprocess(images)
            features = self.encoder.encode_images(batch).float().cpu().numpy().astype(np.float16)
            features = features.reshape(len(owners), self.views, -1)
            for slot, i in enumerate(owners):
                results[i] = features[slot]
        return results, failed

