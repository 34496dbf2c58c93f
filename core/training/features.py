"""Head mode's feature cache: encoder features of every face and a few augmented views,
computed once per (encoder, view recipe) and kept in the project's features/ folder.

Shards of SHARD faces (by face id) are separate .npz files, so new faces only cost their own
shard, and a crash mid-way loses at most the shard being written.

The engine (core/encoders/onnx_engine.py) is ONNX Runtime where the encoder offers it: its
features equal torch's within 1e-4 before they are stored as float16 (where a value now and then
lands one rounding step apart), so caches written by either engine are interchangeable and the
cache key (encoder.cache_key, FEATURE_VERSION) does not name the engine.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.ingest.imageio import ImageProblem, load_face
from core.training.augment import cached_views
from core.training.data import FaceTable
from core.training.events import Event

VIEW_RECIPE = 1  # bump when cached_views changes, so old caches are not reused
SHARD = 2048
ENCODE_BATCH = 64  # faces per engine call (x views images)
PREFETCH = 2  # batches whose views are drawn ahead of the engine
CLAIM_POLL_S = 0.5  # how often a process waiting for another's shard looks again
CLAIM_STALE_S = 60.0  # an empty claim file older than this was left by a process that died


class FeatureCache:
    def __init__(self, root: Path, encoder, n_strong: int = 4, seed: int = 0, engine=None, prefetch: int = PREFETCH):
        self.encoder = encoder
        self.prefetch = prefetch  # 0: views drawn in the calling thread, between engine calls
        self._engine = engine  # None: chosen at the first batch to compute (see engine())
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
        except Exception:  # noqa: BLE001 - whatever is wrong with the shard
            return {}  # a damaged shard is recomputed

    def _write_shard(self, shard: int, entries: dict[int, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ids = np.array(sorted(entries), dtype=np.int64)
        tmp = self.folder / f".shard_{shard:06d}.{os.getpid()}.tmp.npz"
        np.savez(tmp, ids=ids, features=np.stack([entries[i] for i in ids]))
        os.replace(tmp, self._shard_path(shard))

    def engine(self, prefer: str = "auto"):
        """What turns view batches into features: ONNX Runtime where the encoder offers it, else
        torch (core/encoders/onnx_engine.py, `prefer` as there); chosen once, at the first call.
        Its model file lives beside the cache's folders."""
        if self._engine is None:
            from core.encoders.onnx_engine import image_engine

            self._engine = image_engine(self.encoder, self.folder.parent, prefer=prefer)
        return self._engine

    def load(
        self,
        faces: FaceTable,
        rows: np.ndarray | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[np.ndarray, list[int]]:
        """Features (len(rows), views, dim) as float16, computing what is missing.

        Returns the array and the positions (into `rows`) of faces whose image could not be
        read; their features are zeros and the caller leaves them out.
        """
        rows = np.arange(len(faces)) if rows is None else rows
        out = np.zeros((len(rows), self.views, self.encoder.image_dim), dtype=np.float16)
        by_shard = faces.by_shard(rows, SHARD)
        entries = {shard: self._read_shard(shard) for shard in by_shard}
        missing = {
            shard: left
            for shard, positions in sorted(by_shard.items())
            if (left := self._absent(faces, rows, positions, entries[shard]))
        }
        broken = self._compute(faces, rows, missing, entries, progress, should_stop) if missing else []
        for shard, positions in by_shard.items():
            for p in positions:
                features = entries[shard].get(int(faces.ids[rows[p]]))
                if features is not None:
                    out[p] = features
        return out, sorted(set(broken))

    def cached(self, faces: FaceTable, rows: np.ndarray | None = None, view: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """View `view` of the cached features of `rows` (default: every face), (len(rows), dim)
        float16, and whether each face had them; nothing is computed, so a reader that must not
        start an encoder pass (the review queue's label check) can say which faces lack them."""
        if not 0 <= view < self.views:
            raise ValueError(f"view {view} is not cached: the cache holds views 0 to {self.views - 1}")
        rows = np.arange(len(faces)) if rows is None else rows
        out = np.zeros((len(rows), self.encoder.image_dim), dtype=np.float16)
        found = np.zeros(len(rows), dtype=bool)
        by_shard = faces.by_shard(rows, SHARD)
        for shard, positions in by_shard.items():
            entries = self._read_shard(shard)
            for p in positions:
                features = entries.get(int(faces.ids[rows[p]]))
                if features is not None:
                    out[p], found[p] = features[view], True
        return out, found

    @staticmethod
    def _absent(faces: FaceTable, rows: np.ndarray, positions: list[int], entries: dict) -> list[int]:
        return [p for p in positions if int(faces.ids[rows[p]]) not in entries]

    def _compute(
        self,
        faces: FaceTable,
        rows: np.ndarray,
        missing: dict[int, list[int]],
        entries: dict[int, dict[int, np.ndarray]],
        progress,
        should_stop,
    ) -> list[int]:
        """Encode the missing faces (positions by shard) into `entries`, writing each shard when
        its last batch is done. A shard another process is computing (a feature job beside a
        training) is left to it and read back once it lets go (ShardClaims)."""
        total = sum(len(positions) for positions in missing.values())
        done = [0]

        def report(count: int) -> None:
            done[0] += count
            if progress:
                progress(done[0], total)

        broken: list[int] = []
        claims = ShardClaims(self.folder)
        try:
            while missing:
                deferred = self._compute_pass(faces, rows, missing, entries, claims, report, broken, should_stop)
                still: dict[int, list[int]] = {}
                for shard in deferred:
                    claims.wait_released(shard, should_stop)
                    entries[shard].update(self._read_shard(shard))
                    left = self._absent(faces, rows, missing[shard], entries[shard])
                    if len(left) < len(missing[shard]):
                        report(len(missing[shard]) - len(left))
                    if left:
                        still[shard] = left
                missing = still
        finally:
            claims.release_all()
        return broken

    def _compute_pass(self, faces, rows, missing, entries, claims, report, broken, should_stop) -> list[int]:
        """One pass over the shards this process can claim; returns the shards left to others."""
        engine = self.engine()
        jobs = [
            (shard, positions[i : i + ENCODE_BATCH])
            for shard, positions in missing.items()
            for i in range(0, len(positions), ENCODE_BATCH)
        ]
        batches_left = {shard: -(-len(positions) // ENCODE_BATCH) for shard, positions in missing.items()}
        deferred: list[int] = []

        def admit(shard: int) -> bool:
            if claims.take(shard):
                if not self._shard_path(shard).is_file() or not (set(self._read_shard(shard)) - set(entries[shard])):
                    return True
                claims.release(shard)  # written by another process since it was read: read it back
            deferred.append(shard)
            return False

        for (shard, chunk), (batch, owners, failed) in self._prepared(faces, rows, jobs, admit, should_stop):
            if owners:
                features = engine(batch).astype(np.float16).reshape(len(owners), self.views, -1)
                for slot, i in enumerate(owners):
                    entries[shard][int(faces.ids[rows[chunk[i]]])] = features[slot]
            broken.extend(chunk[i] for i in failed)
            batches_left[shard] -= 1
            if batches_left[shard] == 0:
                self._write_shard(shard, entries[shard])
                claims.release(shard)
            report(len(chunk))
        return deferred

    def _prepared(
        self,
        faces: FaceTable,
        rows: np.ndarray,
        jobs: list[tuple[int, list[int]]],
        admit: Callable[[int], bool],
        should_stop,
    ):
        """(job, its views) in job order, for the jobs of shards `admit` lets in (asked when a
        shard's first job comes up). With prefetch, one thread decodes faces and draws views
        `prefetch` batches ahead while the caller runs the engine: Pillow and the engine release
        the GIL, so both cores work. One thread only, in job order: strong views seed torch's
        global generator (augment.strong_view), so views drawn concurrently would differ."""

        def stop_requested() -> None:
            if should_stop and should_stop():
                raise InterruptedError("stopped while computing features")

        def admitted() -> Iterator[tuple[int, list[int]]]:
            decided: dict[int, bool] = {}
            for job in jobs:
                if job[0] not in decided:
                    decided[job[0]] = admit(job[0])
                if decided[job[0]]:
                    yield job

        def views_of(job):
            return self._views(faces, [int(rows[p]) for p in job[1]])

        if self.prefetch <= 0:
            for job in admitted():
                stop_requested()
                yield job, views_of(job)
            return
        upcoming = admitted()
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-views") as pool:

            def submit_next() -> None:
                job = next(upcoming, None)
                if job is not None:
                    pending.append((job, pool.submit(views_of, job)))

            try:
                for _ in range(self.prefetch):
                    submit_next()
                while pending:
                    stop_requested()
                    job, future = pending.popleft()
                    submit_next()
                    yield job, future.result()
            finally:  # stopped or failed: drop the batches not begun
                for _, future in pending:
                    future.cancel()

    def _views(self, faces: FaceTable, rows: list[int]) -> tuple[np.ndarray | None, list[int], list[int]]:
        """The normalised views of these faces as one (faces x views, 3, S, S) float32 batch (None
        where none could be read), the indexes (into rows) of the faces in it, and those whose image
        could not be read."""
        images, owners, failed = [], [], []
        for i, row in enumerate(rows):
            try:
                face = load_face(faces.paths[row], faces.crop_paths[row], faces.boxes[row], faces.angles[row])
            except ImageProblem:
                failed.append(i)
                continue
            images.extend(cached_views(face, int(faces.ids[row]), self.seed, self.n_strong))
            owners.append(i)
        batch = self.encoder.preprocess(images).numpy() if images else None
        return batch, owners, failed


class ShardClaims:
    """Which process computes which shard: `.shard_N.claim`, created exclusively, holds the pid
    of the process computing shard N, so a feature job and a training that start on the same
    cache split the shards instead of computing each twice. A claim whose process is gone (it
    was killed) is taken over."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.held: set[int] = set()

    def _path(self, shard: int) -> Path:
        return self.folder / f".shard_{shard:06d}.claim"

    def take(self, shard: int) -> bool:
        path = self._path(shard)
        self.folder.mkdir(parents=True, exist_ok=True)
        for _attempt in range(2):
            try:
                handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self.alive(path):
                    return False
                path.unlink(missing_ok=True)  # left by a process that died: stale
                continue
            with os.fdopen(handle, "w") as out:
                out.write(str(os.getpid()))
            self.held.add(shard)
            return True
        return False

    @staticmethod
    def alive(path: Path) -> bool:
        """Whether the claim's process still runs (a claim being written counts as alive)."""
        try:
            text = path.read_text().strip()
            if not text:  # just created, its pid not written yet; or its writer died at once
                return time.time() - path.stat().st_mtime < CLAIM_STALE_S
            os.kill(int(text), 0)
        except PermissionError:
            return True  # a process of another user
        except (OSError, ValueError):
            return False  # gone (ProcessLookupError), released meanwhile, or not a pid
        return True

    def wait_released(self, shard: int, should_stop=None) -> None:
        path = self._path(shard)
        while path.exists() and self.alive(path):
            if should_stop and should_stop():
                raise InterruptedError("stopped while waiting for another process's features")
            time.sleep(CLAIM_POLL_S)

    def release(self, shard: int) -> None:
        if shard in self.held:
            self.held.discard(shard)
            self._path(shard).unlink(missing_ok=True)

    def release_all(self) -> None:
        for shard in list(self.held):
            self.release(shard)


@dataclass(frozen=True)
class FillOutcome:
    status: str  # "finished" or "cancelled"
    faces: int  # active faces of the project
    computed: int  # faces whose features were computed now (the others were cached)
    unreadable: int
    seconds: float
    engine: str
    without_mesh: int | None = None  # faces the face mesh could not read (None: meshes not filled)


def fill_cache(
    project,
    encoder_name: str | None = None,
    events=None,
    should_stop: Callable[[], bool] = lambda: False,
    strong_views: int | None = None,
    engine: str = "auto",
    geometry: bool | None = None,
) -> FillOutcome:
    """Compute the features a head-mode run will read, for every active face of the project that
    lacks them: the `features` command, the studio after an import, and the warm worker call it.
    With `geometry` (default: the training default) the face meshes too (core/training/geometry.py).

    Events: started, progress (phase "features", step, total, eta_s), then finished or
    cancelled. A stop request (should_stop) keeps every shard written so far."""
    from core.encoders import DEFAULT_ENCODER, get_encoder
    from core.training.data import load_face_table
    from core.training.events import NullEvents
    from core.training.settings import TrainSettings

    events = events or NullEvents()
    strong_views = TrainSettings.strong_views if strong_views is None else strong_views
    encoder = get_encoder(encoder_name or DEFAULT_ENCODER)
    with project.session() as session:
        faces = load_face_table(project, session)
    cache = FeatureCache(project.cache_dir("features"), encoder, strong_views, seed=0)
    engine_name = cache.engine(prefer=engine).name
    events.emit(
        Event.STARTED,
        faces=len(faces),
        views=cache.views,
        engine=engine_name,
        message=f"features of {len(faces):,} faces, {cache.views} views each, {encoder.spec} encoder on {engine_name}",
    )
    started = time.perf_counter()
    progress = _progress_events(events)
    counted: list[int] = [0]

    def report(done: int, total: int) -> None:
        counted[0] = done
        progress(done, total)

    geometry = TrainSettings.geometry if geometry is None else geometry
    without_mesh = None
    try:
        _features, broken = cache.load(faces, progress=report, should_stop=should_stop)
        if geometry:
            from core.training.geometry import LandmarkCache

            events.emit(
                Event.PROGRESS,
                phase="features",
                step=0,
                total=len(faces),
                eta_s=None,
                message=f"face meshes of {len(faces):,} faces",
            )
            progress = _progress_events(events)
            meshes = LandmarkCache(project.cache_dir("features")).load(
                faces, progress=progress, should_stop=should_stop
            )
            without_mesh = meshes.without_mesh(broken)
    except InterruptedError:
        seconds = time.perf_counter() - started
        events.emit(
            Event.CANCELLED,
            computed=counted[0],
            message=f"stopped after {counted[0]:,} faces; what was computed is kept",
        )
        return FillOutcome("cancelled", len(faces), counted[0], 0, seconds, engine_name)
    seconds = time.perf_counter() - started
    outcome = FillOutcome("finished", len(faces), counted[0], len(broken), seconds, engine_name, without_mesh)
    events.emit(
        Event.FINISHED,
        faces=outcome.faces,
        computed=outcome.computed,
        unreadable=outcome.unreadable,
        without_mesh=without_mesh,
        seconds=round(seconds, 1),
        engine=outcome.engine,
        message=_finished_message(outcome),
    )
    return outcome


def _progress_events(events) -> Callable[[int, int], None]:
    """progress(done, total) -> a progress event with the time left at the rate so far."""
    first: list[float] = []

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if not first:
            first.extend((now, done))
        elapsed, since = now - first[0], done - first[1]
        eta = round(elapsed / since * (total - done), 1) if since > 0 else None
        events.emit(Event.PROGRESS, phase="features", step=done, total=total, eta_s=eta)

    return progress


def _finished_message(outcome: FillOutcome) -> str:
    if not outcome.computed:
        return f"features of all {outcome.faces:,} faces were cached already"
    rate = outcome.computed / max(outcome.seconds, 1e-9)
    text = (
        f"features of {outcome.computed:,} faces computed in {outcome.seconds:.0f} s "
        f"({rate:.0f} faces/s, {outcome.engine}); {outcome.faces:,} faces cached in all"
    )
    if outcome.unreadable:
        text += f"; {outcome.unreadable} face(s) could not be read"
    if outcome.without_mesh:
        text += f"; {outcome.without_mesh} face(s) have no face mesh"
    return text
