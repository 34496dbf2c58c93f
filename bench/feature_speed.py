"""How fast the head-mode feature cache is computed: engines side by side, then the whole path.

Every measurement runs in this one process on the same FER2013 train faces, the settings taking
turns round by round so that whatever else the machine does weighs on each alike:

- engines: the offline tower on one batch of the cache's views (faces x 4 views at 112 px), as
  images per second: torch eager (what the cache used), torch channels-last, ONNX Runtime fp32
  (what it uses now) and ONNX Runtime int8 (static, per-channel, calibrated on other faces),
  each at 1 and 2 threads, with the largest difference from torch eager's features;
- probe: does int8 cost accuracy? Logistic probes (bench/feature_probe.py's) on fp32 and int8
  features of the same dev split of FER2013 train;
- cache: FeatureCache filling a fresh folder, faces per second, today's path (torch eager at
  torch's default threads, views drawn between engine calls) against ONNX Runtime with views
  drawn ahead by a second thread;
- full (--parts full): the FER2013 train + val cache, every view the defaults use (weak,
  mirror, 2 strong), with the chosen path and the thread plan a `features` command gets.

    python -m bench.feature_speed --json-out /tmp/speed.json                # engines, probe, cache
    python -m bench.feature_speed --parts full --json-out /tmp/speed.json   # adds the full cache
    python -m bench.feature_speed --render /tmp/speed.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.report import SHARED_DATA, machine_summary, write_section
from core.encoders import get_encoder
from core.encoders.onnx_engine import OnnxImageEngine, TorchImageEngine, engine_files, image_engine
from core.training.data import FaceTable
from core.training.features import FeatureCache

PARTS = ("engines", "probe", "cache", "full")
Engine = Callable[[np.ndarray], np.ndarray]  # a batch of views -> their features, as the cache calls it
RECORDED_FULL_S = 1927  # docs/benchmarks.md, the FER2013 cache before this change (31,047 faces x 4 views)


def fer_train_items(count: int, seed: int, skip: int = 0) -> list[Path]:
    root = SHARED_DATA / "fer2013" / "train"
    if not root.is_dir():
        raise SystemExit(f"skipped: FER2013 not found at {root} (set FER_SHARED_DATA)")
    paths = sorted(root.glob("*/*.jpg"))
    order = np.random.default_rng(seed).permutation(len(paths))
    return [paths[i] for i in order[skip : skip + count]]


def face_table(paths: list[Path]) -> FaceTable:
    n = len(paths)
    return FaceTable(
        ids=np.arange(1, n + 1, dtype=np.int64),
        splits=np.array(["train"] * n, dtype=object),
        labels=np.full(n, -1),
        paths=list(paths),
        crop_paths=[None] * n,
        boxes=[None] * n,
        angles=[None] * n,
    )


class ChannelsLastEngine:
    name = "torch channels-last"

    def __init__(self, encoder):
        self.tower = copy.deepcopy(encoder.image_tower).eval().to(memory_format=torch.channels_last)

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        return self.tower(x).numpy()


def int8_model(fp32: Path, calibration: np.ndarray, out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": calibration[i : i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    prepared = out.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(
        str(prepared),
        str(out),
        Batches(),
        quant_format=QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def engine_settings(encoder, folder: Path, calibration: np.ndarray) -> dict[str, tuple[Engine, int]]:
    image_engine(encoder, folder, threads=1, prefer="onnx")  # builds the fp32 model
    fp32, _ = engine_files(folder)
    int8 = int8_model(fp32, calibration, folder / "int8.onnx")
    settings: dict[str, tuple[Engine, int]] = {}
    for threads in (1, 2):
        settings[f"torch eager (the cache before), {threads} thread(s)"] = (TorchImageEngine(encoder), threads)
        settings[f"torch channels-last, {threads} thread(s)"] = (ChannelsLastEngine(encoder), threads)
        settings[f"onnxruntime fp32 (the cache now), {threads} thread(s)"] = (OnnxImageEngine(fp32, threads), threads)
        settings[f"onnxruntime int8, {threads} thread(s)"] = (OnnxImageEngine(int8, threads), threads)
    return settings


def views_batch(encoder, paths: list[Path]) -> np.ndarray:
    cache = FeatureCache(Path(tempfile.gettempdir()), encoder, 2)
    batch, _owners, _failed = cache._views(face_table(paths), list(range(len(paths))))
    if batch is None:
        raise SystemExit(f"none of the {len(paths)} FER2013 faces could be read")
    return batch


def measure_engines(encoder, folder: Path, rounds: int, faces: int) -> dict:
    batch = views_batch(encoder, fer_train_items(faces, seed=1))
    calibration = views_batch(encoder, fer_train_items(64, seed=1, skip=faces))  # other faces
    settings = engine_settings(encoder, folder, calibration)
    chunks = [batch[i : i + 256] for i in range(0, len(batch), 256)]  # the cache's batch: 64 faces x 4 views
    outputs: dict[str, np.ndarray] = {}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(rounds):
        for name, (engine, threads) in settings.items():
            torch.set_num_threads(threads)
            started = time.perf_counter()
            outputs[name] = np.concatenate([engine(chunk) for chunk in chunks])
            rates[name].append(len(batch) / (time.perf_counter() - started))
    reference = outputs[next(iter(settings))].astype(np.float32)
    rows = []
    for name, out in outputs.items():
        half = out.astype(np.float16) != reference.astype(np.float16)
        rows.append(
            {
                "engine": name,
                "images_per_s": statistics.median(rates[name]),
                "rounds": rates[name],
                "max_abs_diff": float(np.abs(out - reference).max()),
                "float16_changed": float(half.mean()),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {
        "images": len(batch),
        "faces": faces,
        "batch": 256,
        "rows": rows,
        "feature_max": float(np.abs(reference).max()),
    }


def measure_probe(encoder, folder: Path, train_faces: int, dev_faces: int) -> dict:
    from bench.feature_probe import dev_split, probe

    fp32, _ = engine_files(folder)
    engines = {"fp32": OnnxImageEngine(fp32, 2), "int8": OnnxImageEngine(folder / "int8.onnx", 2)}
    train, dev = dev_split(SHARED_DATA / "fer2013", train_faces, dev_faces, seed=0)
    preprocess = encoder.preprocessor()

    def features(items, engine):
        out = []
        for start in range(0, len(items), 256):
            x = preprocess([Image.open(path).convert("RGB") for path, _ in items[start : start + 256]]).numpy()
            out.append(engine(x))
        return np.concatenate(out)

    y_train, y_dev = np.array([c for _, c in train]), np.array([c for _, c in dev])
    rows = []
    feats = {name: (features(train, engine), features(dev, engine)) for name, engine in engines.items()}
    for per_class in (25, 100, None):
        picked = (
            np.concatenate([np.flatnonzero(y_train == c)[:per_class] for c in range(7)])
            if per_class
            else np.arange(len(y_train))
        )
        c = 0.05 if per_class else 0.5
        row: dict[str, int | str | float] = {"labels": per_class or "all"}
        for name, (x_train, x_dev) in feats.items():
            row[name] = probe(x_train[picked], y_train[picked], x_dev, y_dev, c)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"train_faces": len(train), "dev_faces": len(dev), "rows": rows}


def measure_cache(encoder, folder: Path, rounds: int, faces: int) -> dict:
    table = face_table(fer_train_items(faces, seed=2))
    fp32, _ = engine_files(folder)
    default_threads = torch.get_num_threads()
    settings = {
        f"before: torch eager, {default_threads} threads (torch's default), views between engine calls": (
            TorchImageEngine(encoder),
            default_threads,
            0,
        ),
        "onnxruntime, 2 threads, views between engine calls": (OnnxImageEngine(fp32, 2), 2, 0),
        "now: onnxruntime, 1 thread, views drawn ahead by a second thread": (OnnxImageEngine(fp32, 1), 1, 2),
        "now: onnxruntime, 2 threads, views drawn ahead by a second thread": (OnnxImageEngine(fp32, 2), 2, 2),
    }
    rates: dict[str, list[float]] = {name: [] for name in settings}
    # CPU seconds per face: what other jobs do not change much
    cpu: dict[str, list[float]] = {name: [] for name in settings}
    for _round in range(rounds):
        for name, (engine, threads, prefetch) in settings.items():
            torch.set_num_threads(threads)
            with tempfile.TemporaryDirectory() as tmp:
                cache = FeatureCache(Path(tmp), encoder, 2, engine=engine, prefetch=prefetch)
                started, cpu_started = time.perf_counter(), _cpu_seconds()
                cache.load(table)
                rates[name].append(len(table) / (time.perf_counter() - started))
                cpu[name].append((_cpu_seconds() - cpu_started) / len(table))
        print(json.dumps({name: r[-1] for name, r in rates.items()}), flush=True)
    torch.set_num_threads(default_threads)
    return {
        "faces": len(table),
        "views": 4,
        "rows": [
            {
                "path": name,
                "faces_per_s": statistics.median(r),
                "rounds": r,
                "cpu_s_per_face": statistics.median(cpu[name]),
            }
            for name, r in rates.items()
        ],
    }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def measure_full(root: Path) -> dict:
    from bench.fer_project import ensure_project
    from core.threads import configure_threads
    from core.training.data import load_face_table

    plan = configure_threads("worker")
    project = ensure_project(root)
    with project.session() as session:
        faces = load_face_table(project, session)
    encoder = get_encoder("offline", device="cpu")
    load = os.getloadavg()[0]
    # The project's own cache when it is still empty (later benchmarks and the studio copy reuse
    # it, as bench.fer_project would fill it), a throwaway folder otherwise.
    own = project.cache_dir("features")
    fill_own = not any(own.rglob("shard_*.npz"))
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(own if fill_own else Path(tmp), encoder, 2, seed=0)
        engine = cache.engine().name
        started = time.perf_counter()
        cpu = _cpu_seconds()
        _features, broken = cache.load(faces)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
    return {
        "faces": len(faces),
        "views": 4,
        "seconds": seconds,
        "cpu_seconds": round(cpu, 1),
        "engine": engine,
        "threads": plan.describe(),
        "unreadable": len(broken),
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "filled": "the project's cache" if fill_own else "a temporary folder",
    }


def run(args) -> dict:
    results = json.loads(args.json_out.read_text()) if args.json_out and args.json_out.is_file() else {}
    results.setdefault("machine", machine_summary())
    encoder = get_encoder("offline", device="cpu")

    def save():
        if args.json_out:
            args.json_out.write_text(json.dumps(results, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for part in args.parts:
            started_load = os.getloadavg()[0]
            if part == "engines":
                results["engines"] = measure_engines(encoder, folder, args.rounds, args.faces)
            elif part == "probe":
                if not (folder / "int8.onnx").is_file():
                    engine_settings(encoder, folder, views_batch(encoder, fer_train_items(64, 1, skip=args.faces)))
                results["probe"] = measure_probe(encoder, folder, args.train_faces, args.dev_faces)
            elif part == "cache":
                image_engine(encoder, folder, threads=1, prefer="onnx")
                results["cache"] = measure_cache(encoder, folder, args.rounds, args.cache_faces)
            elif part == "full":
                results["full"] = measure_full(args.project)
            results[part]["load"] = [started_load, os.getloadavg()[0]]
            results[part]["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            save()
    return results


def render(results: dict) -> str:
    lines = [
        "## Feature extraction speed (the head-mode cache)",
        "",
        "`python -m bench.feature_speed` - every setting on the same FER2013 train faces in one process, "
        "taking turns round by round (the median is shown). The offline encoder (EfficientNet-Lite0, first "
        f"11 of 16 blocks, 112 px, 3x3 grid, 1008-d). Machine: {results['machine']}. The machine was shared "
        "with other engineers' jobs (1-minute load average at the start and end of each part in brackets), so "
        "the numbers are lower than on an idle machine; the settings bore that alike.",
    ]
    if "engines" in results:
        e = results["engines"]
        lines += [
            "",
            f"**Engines** ({e['faces']} faces x 4 views = {e['images']:,} images in batches of {e['batch']}; "
            f"load {e['load'][0]:.1f} / {e['load'][1]:.1f}). Difference: the largest absolute difference from "
            f"torch eager's float32 features (which reach {e['feature_max']:.1f}); float16 changed: the share of "
            "values that differ once stored as the cache stores them (float16).",
            "",
            "| engine | images/s | x torch eager, same threads | max abs difference | float16 changed |",
            "|---|---|---|---|---|",
        ]
        base = {
            r["engine"].rsplit(", ", 1)[1]: r["images_per_s"]
            for r in e["rows"]
            if r["engine"].startswith("torch eager")
        }
        for r in e["rows"]:
            speedup = r["images_per_s"] / base[r["engine"].rsplit(", ", 1)[1]]
            lines.append(
                f"| {r['engine']} | **{r['images_per_s']:.0f}** | {speedup:.1f}x | {r['max_abs_diff']:.2g} | "
                f"{r['float16_changed'] * 100:.2f}% |"
            )
    if "probe" in results:
        p = results["probe"]
        lines += [
            "",
            f'**Does int8 cost accuracy?** Logistic probes as in "Which features" ({p["train_faces"]:,} '
            f"probe-training and {p['dev_faces']:,} held-out FER2013 train faces, seed 0, the face itself, "
            f"no augmented views; load {p['load'][0]:.1f} / {p['load'][1]:.1f}): accuracy in % on the held-out faces.",
            "",
            "| labels | fp32 | int8 |",
            "|---|---|---|",
        ]
        for r in p["rows"]:
            label = f"{r['labels']} per class" if r["labels"] != "all" else f"all {p['train_faces']:,}"
            lines.append(f"| {label} | {r['fp32'] * 100:.1f} | {r['int8'] * 100:.1f} |")
    if "cache" in results:
        c = results["cache"]
        before = c["rows"][0]["faces_per_s"]
        lines += [
            "",
            f"**The cache end to end** (FeatureCache filling a fresh folder with {c['faces']} faces x "
            f"{c['views']} views: decode, views, engine, shards; load {c['load'][0]:.1f} / {c['load'][1]:.1f}).",
            "",
            "CPU ms per face: the process's CPU time (all its threads) per face, which other jobs "
            "change far less than they change the wall clock.",
            "",
            "| path | faces/s | x before | CPU ms per face |",
            "|---|---|---|---|",
        ]
        for r in c["rows"]:
            cpu = f"{r['cpu_s_per_face'] * 1000:.0f}" if "cpu_s_per_face" in r else "-"
            lines.append(f"| {r['path']} | **{r['faces_per_s']:.1f}** | {r['faces_per_s'] / before:.1f}x | {cpu} |")
    lines += _reading(results)
    if "full" in results:
        f = results["full"]
        lines += [
            "",
            f"**FER2013 train + val, the whole cache** ({f['faces']:,} faces x {f['views']} views, the "
            f"defaults' views; {f['engine']}, views drawn ahead; {f['threads']}; load {f['load'][0]:.1f} / "
            f"{f['load'][1]:.1f}): **{f['seconds']:.0f} s** ({f['seconds'] / 60:.1f} min, "
            f"{f['faces'] / f['seconds']:.0f} faces/s), against {RECORDED_FULL_S:,} s recorded for the "
            'torch eager cache ("Semi-supervised FER" above).' + _idle_estimate(results),
        ]
    return "\n".join(lines)


def _idle_estimate(results: dict) -> str:
    """The full cache on an idle 2-core machine from the CPU time per face of today's path."""
    rows = [
        r for r in results.get("cache", {}).get("rows", []) if r["path"].startswith("now") and "cpu_s_per_face" in r
    ]
    if not rows:
        return ""
    cpu = min(r["cpu_s_per_face"] for r in rows)
    faces = results["full"]["faces"]
    text = (
        f" The issue's target is 8 minutes on 2 cores; other jobs kept more than a core busy here, so the "
        f"plan gave the cache one thread. By its CPU time per face ({cpu * 1000:.0f} ms, table above) an idle "
        f"2-core machine would take about {faces * cpu / 2 / 60:.0f} min if both cores stay busy: an estimate, "
        "not a measurement"
    )
    before = results["cache"]["rows"][0]
    if "cpu_s_per_face" in before:
        text += (
            f"; the same estimate for the path before ({before['cpu_s_per_face'] * 1000:.0f} ms per face) gives "
            f"{faces * before['cpu_s_per_face'] / 2 / 60:.0f} min, where {RECORDED_FULL_S / 60:.0f} min were measured"
        )
    return text + "."


def _rate(rows: list[dict], start: str, threads: int) -> float:
    return next(r["images_per_s"] for r in rows if r["engine"].startswith(start) and f"{threads} thread" in r["engine"])


def _reading(results: dict) -> list[str]:
    """Which engine the cache uses and why, from the engines and probe parts."""
    if "engines" not in results or "probe" not in results:
        return []
    rows = results["engines"]["rows"]
    best_torch = max(_rate(rows, "torch eager", t) for t in (1, 2))
    ort = {t: _rate(rows, "onnxruntime fp32", t) for t in (1, 2)}
    ort_row = next(r for r in rows if r["engine"].startswith("onnxruntime fp32"))
    int8_row = next(r for r in rows if r["engine"].startswith("onnxruntime int8"))
    small = results["probe"]["rows"][0]
    return [
        "",
        f"**Reading.** The cache's engine is ONNX Runtime fp32: {max(ort.values()) / best_torch:.1f}x the images "
        f"per second of torch eager's better thread count, and its features are torch's within "
        f"{ort_row['max_abs_diff']:.0e} (the bar is 1e-4): stored as float16, {ort_row['float16_changed'] * 100:.0f}% "
        "of values land one rounding step apart, so caches written by either engine are interchangeable and the "
        "cache key is unchanged. Channels-last helps torch far less. int8 would be "
        f"{_rate(rows, 'onnxruntime int8', 2) / ort[2]:.1f}x faster again, but it moves "
        f"{int8_row['float16_changed'] * 100:.0f}% of the stored values (by up to {int8_row['max_abs_diff']:.1f}), so it "
        "would need a cache key of its own and calibration faces, and its probe is no better "
        f"({small['int8'] * 100:.1f} against {small['fp32'] * 100:.1f}% with {small['labels']} labels per class): "
        "not taken. Drawing views on a second thread gained nothing measurable here, where other jobs kept both "
        "cores busy; it is kept because it costs no CPU time per face and lets a free core decode while the "
        "engine runs.",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts",
        type=lambda s: s.split(","),
        default=["engines", "probe", "cache"],
        help=f"comma-separated, of {', '.join(PARTS)} (default: engines,probe,cache)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--faces", type=int, default=128, help="faces whose views the engines encode")
    parser.add_argument("--cache-faces", type=int, default=384)
    parser.add_argument("--train-faces", type=int, default=5000)
    parser.add_argument("--dev-faces", type=int, default=2000)
    parser.add_argument(
        "--project",
        type=Path,
        default=Path(os.environ.get("FER_BENCH_PROJECT", "/tmp/fer-bench-project")),
        help="the FER2013 benchmark project (bench/fer_project.py; imported if missing)",
    )
    parser.add_argument("--json-out", type=Path, help="results file; parts measured before are kept")
    parser.add_argument("--render", type=Path, help="render saved results into docs/benchmarks.md and exit")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; of {', '.join(PARTS)}")
    results = json.loads(args.render.read_text()) if args.render else run(args)
    body = render(results)
    print(body)
    if not args.no_write:
        write_section("feature-speed", body, rendered_only=bool(args.render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
