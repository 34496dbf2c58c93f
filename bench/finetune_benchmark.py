"""Fine-tune mode on FER2013 against head mode: throughput (faces per second) and val accuracy.

For each N (labeled faces per class), seed and method, the same labeled faces train twice:
in fine-tune mode (the image tower trains on weak/strong augmented images, through the worker's
own `prepare_finetune`, bf16 autocast on CUDA) and in head mode (frozen tower, cached features,
as `bench.ssl_benchmark`). Each fine-tune run starts from freshly loaded pretrained weights.
Reported: the EMA model at the last step on val (PublicTest); nothing is selected on val.
"Faces per second" counts the faces a training step draws (labeled + unlabeled batch) over the
training wall time, image decoding and augmentation included (`--workers` decoding processes).

    python -m bench.finetune_benchmark                          # GPU: the full comparison
    python -m bench.finetune_benchmark --steps 20 --labels 25 --seeds 0 --methods supervised  # CPU smoke
    python -m bench.finetune_benchmark --render results.json    # results JSON -> docs section
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.fer_project import DEFAULT_ROOT, ensure_features, ensure_project, hidden_labels
from bench.report import machine_summary, saved_or_run, write_section
from bench.ssl_benchmark import _mean_sd, labeled_subset
from core.encoders import get_encoder
from core.encoders.text import class_text_embeddings, load_descriptions
from core.training.data import load_face_table
from core.training.head import build_head_trainer
from core.training.inference import predict
from core.training.loop import Hook, LoopConfig
from core.training.metrics import classification_report
from core.training.settings import TrainSettings
from core.training.worker import choose_device, prepare_finetune

SECTION = "finetune-fer2013"


class _TimedSource:
    """The trainer's batch source, timing how long each step waits for its batch (with the
    decoding workers behind, that wait says whether they or the step itself bound the run)."""

    def __init__(self, source):
        self.source = source
        self.wait_s = 0.0

    def next_batch(self, step: int):
        started = time.perf_counter()
        batch = self.source.next_batch(step)
        self.wait_s += time.perf_counter() - started
        return batch

    def __getattr__(self, name):  # state_dict and the rest, as the source has them
        return getattr(self.source, name)


def _train_timed(trainer, args, device: torch.device) -> dict:
    """Run the trainer; its wall time, the faces its steps drew per second, and the share of the
    time its steps waited for their batches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    trainer.source = timed = _TimedSource(trainer.source)
    started = time.perf_counter()
    trainer.run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - started
    trainer.source = timed.source
    ratio = args.unlabeled_ratio if trainer.algorithm.uses_unlabeled else 0
    return {
        "train_s": train_s,
        "faces_per_s": _faces_per_s(args.steps, args.batch_size, ratio, train_s),
        "batch_wait_share": timed.wait_s / train_s,
        "peak_gpu_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def _faces_per_s(steps: int, batch_size: int, unlabeled_ratio: int, seconds: float) -> float:
    """Faces a run's steps drew (labeled + unlabeled batches) per second of training."""
    return steps * batch_size * (1 + unlabeled_ratio) / seconds


def labeled_fingerprint(faces, train_rows: np.ndarray, subset: np.ndarray) -> str:
    """sha256 over the sorted file names of the labeled train faces, with their classes."""
    names = sorted(f"{faces.paths[row].name}:{label}" for row, label in zip(train_rows, subset) if label >= 0)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def _scores(val_y: np.ndarray, preds) -> dict:
    return {
        "fused": classification_report(val_y, preds.fused.argmax(1)),
        "classifier": classification_report(val_y, preds.semantic.argmax(1)),
    }


class StepProfiler(Hook):
    """torch.profiler over `active` steps of a run, after `wait` steps have warmed it up: where a
    step's time goes (kernels on the device, or the host launching them and waiting). Writes the
    operator table to `table_path` and keeps a summary for the results."""

    priority = 99

    def __init__(self, device: torch.device, table_path: Path, wait: int, active: int = 20):
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.device, self.table_path, self.active = device, table_path, active
        self.summary: dict = {}
        self._marks: list[float] = []
        self._profile = profile(
            activities=activities,
            schedule=schedule(wait=wait, warmup=3, active=active, repeat=1),
            on_trace_ready=self._report,
        )
        self._window = range(wait + 3, wait + 3 + active + 1)

    def before_run(self, trainer) -> None:
        self._profile.start()

    def after_step(self, trainer, result) -> None:
        if trainer.step in self._window:  # wall time from the first to the last profiled step
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._marks.append(time.perf_counter())
        self._profile.step()

    def after_run(self, trainer, status: str) -> None:
        self._profile.stop()

    def _report(self, prof) -> None:
        events = prof.key_averages()
        on_device = "self_device_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        device_us = sum(getattr(e, on_device, 0) for e in events if self.device.type == "cuda")
        # A run shorter than the window is profiled over the steps it had (stop() ends it early).
        steps = len(self._marks) - 1 if len(self._marks) > 1 else self.active
        launches = sum(e.count for e in events if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
        self.summary = {
            "profiled_steps": steps,
            "wall_ms_per_step": (self._marks[-1] - self._marks[0]) * 1e3 / steps if len(self._marks) > 1 else None,
            "device_kernel_ms_per_step": device_us / 1e3 / steps if self.device.type == "cuda" else None,
            "kernel_launches_per_step": launches / steps,
        }
        table = events.table(sort_by=on_device, row_limit=30)
        self.table_path.write_text(f"{self.summary}\n\n{table}\n")


def finetune_run(faces, labels, class_text, val_rows, val_y, method: str, args, seed: int, device) -> dict:
    encoder = get_encoder(args.encoder, device=device)  # fresh pretrained weights for every run
    settings = TrainSettings(
        algorithm=method,
        encoder=args.encoder,
        mode="finetune",
        loader_workers=args.workers,
        loop=LoopConfig(steps=args.steps, batch_size=args.batch_size, unlabeled_ratio=args.unlabeled_ratio, seed=seed),
    )
    settings.validate()
    profiler = None
    table = args.profile / f"profile-{method}.txt" if args.profile else None
    if table and not table.exists():  # each method's first run only: a lease brings back 8 files at most
        table.parent.mkdir(parents=True, exist_ok=True)
        profiler = StepProfiler(device, table, wait=min(100, args.steps // 4))
    prepared = prepare_finetune(
        faces, labels, encoder, class_text, settings, device, hooks=[profiler] if profiler else []
    )
    timing = _train_timed(prepared.trainer, args, device)
    if profiler and profiler.summary:
        timing["profile"] = profiler.summary
    slots = np.full(len(faces), -1, dtype=np.int64)
    started = time.perf_counter()
    preds = prepared.predict_all(val_rows, slots)
    predict_s = time.perf_counter() - started
    return {
        "mode": "finetune",
        "method": method,
        "seed": seed,
        **_scores(val_y, preds),
        **timing,
        "predict_faces_per_s": len(val_rows) / predict_s,
    }


def head_run(features, labels, class_text, val_x, val_y, method: str, args, seed: int, device) -> dict:
    settings = TrainSettings(
        algorithm=method,
        encoder=args.encoder,
        loop=LoopConfig(steps=args.steps, batch_size=args.batch_size, unlabeled_ratio=args.unlabeled_ratio, seed=seed),
    )
    trainer = build_head_trainer(features, labels, class_text, settings, device)
    timing = _train_timed(trainer, args, device)
    preds = predict(trainer.ema.module, trainer.algorithm, val_x, trainer.step)
    return {"mode": "head", "method": method, "seed": seed, **_scores(val_y, preds), **timing}


def run_benchmark(args, checkpoint=None) -> dict:
    device = choose_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    project = ensure_project(args.project)
    if "head" in args.modes:
        encoder, faces, features_all, broken, _ = ensure_features(project, args.encoder, args.strong_views)
    else:
        # Fine-tune mode alone needs no head-mode feature cache (minutes on a lent GPU's short lease);
        # an unreadable train face then fails the run, naming the file.
        encoder, features_all, broken = get_encoder(args.encoder), None, []
        with project.session() as session:
            faces = load_face_table(project, session)
    truth_all = hidden_labels(project, faces)
    usable = np.ones(len(faces), bool)
    usable[broken] = False
    train = (faces.splits == "train") & usable & (truth_all >= 0)
    # Fine-tune mode trains on every train face of the table, so the faces it may not see
    # (unreadable, or without hidden truth) leave the split for this benchmark.
    faces.splits = np.where((faces.splits == "train") & ~train, "excluded", faces.splits)
    train_rows = np.flatnonzero(train)
    val_rows = np.flatnonzero((faces.splits == "val") & usable & (faces.labels >= 0))
    val_y = faces.labels[val_rows]
    class_text = class_text_embeddings(encoder, load_descriptions(), args.text_cache or project.cache_dir("features"))
    val_x = torch.from_numpy(features_all[val_rows, 0]) if features_all is not None else None
    results: dict = {
        "settings": {
            "labels_per_class": args.labels,
            "seeds": args.seeds,
            "methods": args.methods,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "unlabeled_ratio": args.unlabeled_ratio,
            "workers": args.workers,
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "machine": machine_summary(),
            "torch": torch.__version__,
            "encoder": encoder.describe(),
            "train_faces": len(train_rows),
            "val_faces": len(val_rows),
        },
        "runs": [],
    }
    done = set()
    if args.resume_json and args.resume_json.is_file():
        results["runs"] = json.loads(args.resume_json.read_text())["runs"]
        done = {(r["mode"], r["method"], r["labels_per_class"], r["seed"]) for r in results["runs"]}
    for n in args.labels:
        for seed in args.seeds:
            subset = labeled_subset(truth_all[train_rows], faces.ids[train_rows], n, seed)
            labels = np.full(len(faces), -1, dtype=np.int64)
            labels[train_rows] = subset
            # Which faces were labeled, by file name: runs on other machines (or in head mode on the
            # CPU) compare like with like only where this matches.
            results.setdefault("labeled_sets", {})[f"{n}/{seed}"] = labeled_fingerprint(faces, train_rows, subset)
            for method in args.methods:
                for mode in args.modes:
                    if (mode, method, n, seed) in done:
                        continue
                    torch.manual_seed(seed)
                    if mode == "finetune":
                        run = finetune_run(faces, labels, class_text, val_rows, val_y, method, args, seed, device)
                    else:
                        run = head_run(
                            features_all[train_rows], subset, class_text, val_x, val_y, method, args, seed, device
                        )
                    run["labels_per_class"] = n
                    if args.side_by_side > 1:
                        run["side_by_side"] = args.side_by_side
                    results["runs"].append(run)
                    if checkpoint:
                        checkpoint(results)
                    print(
                        f"N={n} seed {seed} {mode:<8} {method:<10} fused {run['fused']['accuracy'] * 100:.1f} "
                        f"classifier {run['classifier']['accuracy'] * 100:.1f}  {run['train_s']:.0f} s  "
                        f"{run['faces_per_s']:.0f} faces/s",
                        flush=True,
                    )
    return results


def merge_results(parts: list[dict]) -> dict:
    """Several results files as one: the first's settings and preface, every part's runs (a run in
    more than one part, such as a resumed file's, kept once), methods and labeled-set fingerprints."""
    if not parts:
        raise ValueError("nothing to merge")
    merged = {**parts[0], "settings": dict(parts[0]["settings"]), "runs": [], "labeled_sets": {}}
    methods = []
    for part in parts:
        methods += [m for m in part["settings"]["methods"] if m not in methods]
        for key, fingerprint in part.get("labeled_sets", {}).items():
            if merged["labeled_sets"].setdefault(key, fingerprint) != fingerprint:
                raise ValueError(f"the parts drew different labeled faces for N/seed {key}")
        seen = {(r["mode"], r["method"], r["labels_per_class"], r["seed"]) for r in merged["runs"]}
        merged["runs"] += [
            r for r in part["runs"] if (r["mode"], r["method"], r["labels_per_class"], r["seed"]) not in seen
        ]
    merged["settings"]["methods"] = methods
    return merged


def head_reference_runs(ssl_results: dict, runs: list[dict]) -> list[dict]:
    """Head-mode rows taken from a `bench.ssl_benchmark` results file, for the N, seeds and
    methods the fine-tune runs have (same labeled-face draw, same steps and batches). Used where a
    GPU lease is too short for the head-mode feature cache as well: marked with where they ran."""
    s = ssl_results["settings"]
    wanted = {(r["labels_per_class"], r["seed"], r["method"]) for r in runs if r["mode"] == "finetune"}
    out = []
    for r in ssl_results["runs"]:
        if (r["labels_per_class"], r["seed"], r["method"]) not in wanted:
            continue
        ratio = 0 if r["method"] == "supervised" else s["unlabeled_ratio"]  # the one method without unlabeled batches
        out.append(
            {
                "mode": "head",
                "method": r["method"],
                "seed": r["seed"],
                "labels_per_class": r["labels_per_class"],
                "fused": r["fused"],
                "classifier": r["classifier"],
                "train_s": r["seconds"],
                "faces_per_s": _faces_per_s(s["steps"], s["batch_size"], ratio, r["seconds"]),
                "ran_on": f"{s['device']}, {s['machine']}; torch {s['torch']} (bench.ssl_benchmark)",
            }
        )
    return out


def render(results: dict) -> str:
    s = results["settings"]
    lines = ["## Fine-tune mode against head mode: FER2013", ""]
    if results.get("preface"):
        lines += [results["preface"], ""]
    lines += [
        f"`python -m bench.finetune_benchmark` - {s['train_faces']:,} train faces (labels hidden except N per "
        f"class), {s['val_faces']:,} val faces. Encoder {s['encoder']}. Every run: {s['steps']} steps, batch "
        f"{s['batch_size']} labeled + {s['batch_size'] * s['unlabeled_ratio']} unlabeled, the same labeled faces "
        f"and seed in both modes; fine-tune mode trains the image tower at a tenth of the head's learning rate "
        f"on weak/strong augmented images ({s['workers']} decoding workers), head mode trains on cached features. "
        f"EMA model at the last step; nothing selected on val. Device {s['device']}"
        + (f" ({s['gpu']})" if s.get("gpu") else "")
        + f"; {s['machine']}; torch {s['torch']}.",
        "",
        "| N | method | mode | fused acc | fused bal. acc | train s | faces/s (training) | waiting for batches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    elsewhere = sorted({r["ran_on"] for r in results["runs"] if r.get("ran_on")})
    keys = sorted(
        {(r["labels_per_class"], r["method"], r["mode"]) for r in results["runs"]},
        key=lambda k: (k[0], s["methods"].index(k[1]) if k[1] in s["methods"] else 99, k[2] != "head"),
    )
    for n, method, mode in keys:
        group = [r for r in results["runs"] if (r["labels_per_class"], r["method"], r["mode"]) == (n, method, mode)]
        where = f" ({chr(97 + elsewhere.index(group[0]['ran_on']))})" if group[0].get("ran_on") else ""
        where += " †" if any(r.get("side_by_side", 1) > 1 for r in group) else ""
        lines.append(
            f"| {n} | {method} | {mode}{where} | {_mean_sd([r['fused']['accuracy'] for r in group])} | "
            f"{_mean_sd([r['fused']['balanced_accuracy'] for r in group])} | "
            f"{statistics.mean(r['train_s'] for r in group):.0f} | "
            f"{statistics.mean(r['faces_per_s'] for r in group):,.0f} | {_wait_share(group)} |"
        )
    profiled = [r for r in results["runs"] if r.get("profile", {}).get("wall_ms_per_step")]
    if profiled:
        lines += [
            "",
            "Profiled steps (torch.profiler over 20 steps after a warm-up; the profiler slows them): "
            + "; ".join(
                f"N = {r['labels_per_class']} {r['method']}: {r['profile']['wall_ms_per_step']:.1f} ms a "
                f"step, of which kernels on the device "
                + (
                    f"{r['profile']['device_kernel_ms_per_step']:.1f} ms"
                    if r["profile"].get("device_kernel_ms_per_step") is not None
                    else "-"
                )
                + f", {r['profile']['kernel_launches_per_step']:.0f} kernel launches"
                for r in profiled
            )
            + ".",
        ]
    peaks = [r["peak_gpu_gib"] for r in results["runs"] if r.get("peak_gpu_gib")]
    lines += [
        "",
        "Val accuracy in %, mean ± sd over seeds. Faces/s: labeled + unlabeled faces drawn per second "
        "of training. Waiting for batches: the share of the training time the steps spent waiting for the "
        "decoding workers' next batch (not recorded before 2026-11-28: -)."
        + (f" Peak GPU memory {max(peaks):.1f} GiB." if peaks else "")
        + "".join(f" ({chr(97 + i)}) ran on {where}." for i, where in enumerate(elsewhere))
        + (
            " †: ran side by side with other benchmark processes (one per method) on the same GPU and cores, "
            "so its time and faces/s are under that sharing."
            if any(r.get("side_by_side", 1) > 1 for r in results["runs"])
            else ""
        ),
        "",
    ]
    return "\n".join(lines)


def _wait_share(group: list[dict]) -> str:
    shares = [r["batch_wait_share"] for r in group if r.get("batch_wait_share") is not None]
    return f"{statistics.mean(shares) * 100:.0f}%" if shares else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--labels", type=lambda t: [int(v) for v in t.split(",")], default=[25, 100])
    parser.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2])
    parser.add_argument("--methods", type=lambda t: t.split(","), default=["supervised", "fixmatch", "sitfer"])
    parser.add_argument("--modes", type=lambda t: t.split(","), default=["head", "finetune"])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--unlabeled-ratio", type=int, default=3)
    parser.add_argument("--strong-views", type=int, default=2, help="head mode's cached strong views")
    parser.add_argument("--workers", type=int, default=8, help="image-decoding processes in fine-tune mode")
    parser.add_argument("--device", default=None)
    parser.add_argument("--encoder", default="offline")
    parser.add_argument("--text-cache", type=Path, help="folder holding the class text embeddings cache")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--resume-json", type=Path)
    parser.add_argument("--render", type=Path, help="render saved results into docs/benchmarks.md and exit")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="profile 20 steps of each method's first fine-tune run (torch.profiler): its "
        "operator table into DIR, a summary with the run",
    )
    parser.add_argument(
        "--side-by-side",
        type=int,
        default=1,
        metavar="K",
        help="this process runs beside K-1 others on the same device (recorded with each run)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="merge results files (side-by-side processes', or new runs into recorded ones) into "
        "--json-out, and render them",
    )
    parser.add_argument(
        "--head-reference",
        type=Path,
        help="a bench.ssl_benchmark results JSON whose head-mode runs (same N, seeds, methods) "
        "stand beside fine-tune runs that have no head-mode run of their own",
    )
    args = parser.parse_args(argv)
    bad_modes = set(args.modes) - {"head", "finetune"}
    if bad_modes:
        parser.error(f"unknown mode {', '.join(sorted(bad_modes))}; choose head, finetune or both")
    if args.merge:
        results = merge_results([json.loads(path.read_text()) for path in args.merge])
        if args.json_out:
            args.json_out.write_text(json.dumps(results, indent=1))
    else:
        results = saved_or_run(args, run_benchmark)
    if args.head_reference:
        have = {(r["labels_per_class"], r["seed"], r["method"]) for r in results["runs"] if r["mode"] == "head"}
        results["runs"] += [
            r
            for r in head_reference_runs(json.loads(args.head_reference.read_text()), results["runs"])
            if (r["labels_per_class"], r["seed"], r["method"]) not in have
        ]
    body = render(results)
    print(body)
    if not args.no_write:
        write_section(SECTION, body, rendered_only=bool(args.render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
