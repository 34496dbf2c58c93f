"""SS-FER benchmark on FER2013 (DESIGN.md section 6), head mode, every method in one run.

Protocol: labeled = N faces per class of FER2013 train (N = 25 and 100; disgust capped by what
exists), drawn with a fixed seed from the hidden ground truth; unlabeled = the rest of train,
labels hidden; reported on val (FER2013 PublicTest). Same encoder features, same steps, same
batch for every method. The model reported is the EMA teacher at the last step: no checkpoint
is picked on val (or on anything else).

    python -m bench.ssl_benchmark                       # full protocol, writes docs/benchmarks.md
    python -m bench.ssl_benchmark --json-out r.json --no-write   # e.g. on a GPU machine
    python -m bench.ssl_benchmark --render r.json       # turn saved results into the docs section
    python -m bench.ssl_benchmark --suite seeds         # the three seed methods side by side
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.fer_project import DEFAULT_ROOT, load_benchmark_data
from bench.report import machine_summary, saved_or_run, write_section
from core.classes import class_names
from core.ingest.importer import choose_kept_labels
from core.ssl.algorithms import MethodConfig
from core.ssl.levels import MemoryBank
from core.training.head import build_head_trainer
from core.training.inference import predict
from core.training.loop import LoopConfig
from core.training.metrics import classification_report
from core.training.settings import TrainSettings
from core.training.worker import choose_device

METHODS: dict[str, tuple[str, dict]] = {
    "supervised": ("supervised", {}),
    "fixmatch": ("fixmatch", {}),
    "sitfer": ("sitfer", {}),
    "sitfer - semantic": ("sitfer", {"use_semantic": False}),
    "sitfer - text": ("sitfer", {"use_text": False}),
    "sitfer - instance": ("sitfer", {"use_instance": False}),
    "sitfer + DTA": ("sitfer", {"dynamic_threshold": True}),  # sitfer's default has it off (dev split)
    "sitfer - SNL": ("sitfer", {"negative_learning": False}),
}
# The seed papers side by side (issue: LEAF and DTA-SNL in the same trainer), with LEAF's
# modules plugged into fixmatch and sitfer, whose gain the LEAF paper claims.
SEED_METHODS: dict[str, tuple[str, dict]] = {
    "supervised": ("supervised", {}),
    "fixmatch": ("fixmatch", {}),
    "sitfer": ("sitfer", {}),
    "leaf": ("leaf", {}),
    "dta-snl": ("dta-snl", {}),
    "fixmatch + LEAF modules": ("fixmatch", {"leaf_modules": True}),
    "sitfer + LEAF modules": ("sitfer", {"leaf_modules": True}),
}
# Face geometry (issue 21): each method with the image features alone and with the face mesh's
# geometry appended (core/training/geometry.py); GEOMETRY marks the runs that read it.
GEOMETRY = "+geometry"
GEOMETRY_METHODS: dict[str, tuple[str, dict]] = {
    name: (algorithm, {GEOMETRY: True} if with_geometry else {})
    for algorithm in ("supervised", "fixmatch", "sitfer")
    for name, with_geometry in ((algorithm, False), (f"{algorithm} + geometry", True))
}
SUITES = {
    "ssl": (METHODS, "ssl-fer2013", "Semi-supervised FER: FER2013, head mode (frozen encoder)"),
    "seeds": (
        SEED_METHODS,
        "seed-methods-fer2013",
        "The three seed methods side by side: FER2013, head mode (frozen encoder)",
    ),
    "geometry": (
        GEOMETRY_METHODS,
        "geometry-fer2013",
        "Face geometry: FER2013, head mode, each method with and without the face mesh",
    ),
}
CEILING = "supervised, all labels"
CEILING_GEOMETRY = "supervised, all labels + geometry"
# Settings of sitfer tried on a dev split carved from train (never on val); the best mean dev
# accuracy is used for sitfer and all its ablations in the reported runs.
TUNING_GRID: list[dict] = [
    {},
    {"teacher_pseudo_labels": False, "flip_ensemble": False},
    {"soft_weighting": True},
    {"dynamic_threshold": True},
    {"dynamic_threshold": True, "dta_floor": 0.7},
]
DEV_FACES = 2000


def labeled_subset(truth: np.ndarray, ids: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    names = class_names()
    keys = {names[c]: [(f"{int(i):09d}", 0) for i in ids[truth == c]] for c in range(len(names))}
    kept = {int(k) for k, _ in choose_kept_labels(keys, per_class, seed)}
    return np.where(np.isin(ids, list(kept)), truth, -1)


def precision_at_coverage(confidence: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    order = np.argsort(-confidence)
    out = {}
    for coverage in (0.1, 0.25, 0.5, 0.75, 1.0):
        top = order[: max(1, int(round(coverage * len(order))))]
        out[f"{int(coverage * 100)}%"] = float(correct[top].mean())
    return out


def run_one(name, algorithm, overrides, features, labels, truth, class_text, val_x, val_y, loop, device):
    settings = TrainSettings(algorithm=algorithm, method=MethodConfig(**overrides), loop=loop)
    started = time.perf_counter()
    trainer = build_head_trainer(features, labels, class_text, settings, device)
    trainer.run()
    train_seconds = time.perf_counter() - started
    val = predict(trainer.ema.module, trainer.algorithm, val_x, trainer.step)
    result = {
        "method": name,
        "seconds": train_seconds,
        "classifier": classification_report(val_y, val.semantic.argmax(1)),
        "fused": classification_report(val_y, val.fused.argmax(1)),
    }
    unlabeled = np.flatnonzero(labels < 0)
    if len(unlabeled) and algorithm != "supervised":
        slots = torch.from_numpy(unlabeled)
        preds = predict(
            trainer.ema.module, trainer.algorithm, torch.from_numpy(features[unlabeled, 0]), trainer.step, exclude=slots
        )
        gt = truth[unlabeled]
        result["pseudo_labels"] = {
            "fused": precision_at_coverage(preds.fused.max(1), preds.fused.argmax(1) == gt),
            "semantic": precision_at_coverage(preds.semantic.max(1), preds.semantic.argmax(1) == gt),
            "passed_share": float(preds.passed.mean()),
            "passed_precision": float((preds.pseudo_label == gt)[preds.passed].mean()) if preds.passed.any() else None,
        }
    return result


def instance_cost(bank_size: int, queries: int, device: torch.device, dim: int = 512) -> dict:
    """Time of the instance level for one batch: batched (one matrix product) vs a Python loop
    over bank entries, as the public reference code does (timed on a few queries, scaled up)."""
    torch.manual_seed(0)
    bank = MemoryBank(bank_size, dim, 7, top_k=5, device=device)
    bank.update(
        torch.arange(bank_size, device=device),
        torch.nn.functional.normalize(torch.randn(bank_size, dim, device=device), dim=1),
        torch.randint(-1, 7, (bank_size,), device=device),
    )
    q = torch.nn.functional.normalize(torch.randn(queries, dim, device=device), dim=1)
    for _ in range(3):
        bank.class_similarity(q)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    repeats = 20
    for _ in range(repeats):
        bank.class_similarity(q)
    if device.type == "cuda":
        torch.cuda.synchronize()
    batched = (time.perf_counter() - start) / repeats
    feats, labs = bank.features.cpu(), bank.labels.cpu().tolist()
    sample = 2
    start = time.perf_counter()
    for b in range(sample):
        qb = q[b].cpu()
        per_class: dict[int, list[float]] = {}
        for m in range(bank_size):
            if labs[m] >= 0:
                per_class.setdefault(labs[m], []).append(float(qb @ feats[m]))
        _ = {c: sorted(v, reverse=True)[:5] for c, v in per_class.items()}
    naive = (time.perf_counter() - start) / sample * queries
    return {
        "bank": bank_size,
        "queries": queries,
        "batched_ms": batched * 1000,
        "naive_loop_ms": naive * 1000,
        "device": str(device),
    }


def tune(features, truth, ids, class_text, loop, device, args) -> tuple[dict, list[dict]]:
    """Pick sitfer's settings on a dev split of train: DEV_FACES faces held out of training and
    used as the evaluation set; val is not touched."""
    rng = np.random.default_rng(12345)
    dev = np.zeros(len(truth), bool)
    dev[rng.choice(len(truth), size=min(DEV_FACES, len(truth) // 5), replace=False)] = True
    keep = ~dev
    dev_x, dev_y = torch.from_numpy(features[dev, 0]), truth[dev]
    trials: list[dict] = []
    for overrides in args.tuning_grid or TUNING_GRID:
        scores = []
        for per_class in args.labels:
            labels = labeled_subset(truth[keep], ids[keep], per_class, seed=100)
            run = run_one(
                "sitfer",
                "sitfer",
                overrides,
                features[keep],
                labels,
                truth[keep],
                class_text,
                dev_x,
                dev_y,
                LoopConfig(**{**loop.to_dict(), "seed": 100}),
                device,
            )
            scores.append(run["fused"]["accuracy"])
        trials.append({"overrides": overrides, "dev_fused_accuracy": scores})
        print(f"tuning {overrides}: dev fused accuracy {scores}", flush=True)
    best = max(trials, key=lambda t: statistics.mean(t["dev_fused_accuracy"]))
    return best["overrides"], trials


def run_benchmark(args, checkpoint=None) -> dict:
    device = choose_device(args.device)
    data = load_benchmark_data(
        args.project, args.encoder, args.strong_views, args.text_cache, geometry=args.suite == "geometry"
    )
    encoder, class_text, features, truth, ids = data.encoder, data.class_text, data.features, data.truth, data.ids
    val_x, val_y = data.val_x, data.val_y

    def inputs(overrides: dict) -> tuple[dict, np.ndarray, torch.Tensor]:
        """The method's settings and the train and val features it reads."""
        overrides = dict(overrides)
        if overrides.pop(GEOMETRY, False):
            if data.features_geometry is None or data.val_x_geometry is None:
                raise ValueError("a method with face geometry needs the geometry suite (--suite geometry)")
            return overrides, data.features_geometry, data.val_x_geometry
        return overrides, features, val_x

    loop = LoopConfig(steps=args.steps, batch_size=args.batch_size, unlabeled_ratio=args.unlabeled_ratio)
    results: dict = {
        "settings": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "unlabeled_ratio": args.unlabeled_ratio,
            "strong_views": args.strong_views,
            "seeds": args.seeds,
            "labels": args.labels,
            "device": str(device),
            "machine": machine_summary(),
            "torch": torch.__version__,
            "encoder": encoder.describe(),
            "train_faces": len(truth),
            "val_faces": len(val_y),
            "feature_seconds": data.feature_seconds,
            "method_defaults": MethodConfig().to_dict(),
            "loop": loop.to_dict(),
        },
        "runs": [],
    }
    if data.meshes_missing is not None:
        from core.training.geometry import GEOMETRY_GAIN, GEOMETRY_VERSION, NORMALISATION

        results["settings"]["geometry"] = {
            "mesh_seconds": data.mesh_seconds,
            "without_mesh": data.meshes_missing,
            "normalisation": NORMALISATION,
            "gain": GEOMETRY_GAIN,
            "version": GEOMETRY_VERSION,
        }
    chosen: dict = {}
    done: set = set()
    if args.resume_json and args.resume_json.is_file():
        previous = json.loads(args.resume_json.read_text())
        results["runs"] = previous["runs"]
        if "tuning" in previous:
            results["tuning"] = previous["tuning"]
            chosen = previous["tuning"]["chosen"]
        done = {(r["method"], r["labels_per_class"], r["seed"]) for r in results["runs"]}
    if args.tune and "tuning" not in results:
        chosen, trials = tune(features, truth, ids, class_text, loop, device, args)
        results["tuning"] = {
            "grid": trials,
            "chosen": chosen,
            "dev_faces": DEV_FACES,
            "note": "dev split held out of train; val never used for choosing",
        }
    catalogue = SUITES[args.suite][0]
    results["settings"]["suite"] = args.suite
    methods = [m for m in catalogue if m in args.methods]
    # Seed-major order: a run cut short still has every method at every N for its first seeds.
    for seed in args.seeds:
        for per_class in args.labels:
            labels = labeled_subset(truth, ids, per_class, seed)
            for name in methods:
                if (name, per_class, seed) in done:
                    continue
                algorithm, overrides = catalogue[name]
                if algorithm == "sitfer":
                    overrides = {**chosen, **overrides}
                overrides, train_x, eval_x = inputs(overrides)
                run = run_one(
                    name,
                    algorithm,
                    overrides,
                    train_x,
                    labels,
                    truth,
                    class_text,
                    eval_x,
                    val_y,
                    LoopConfig(**{**loop.to_dict(), "seed": seed}),
                    device,
                )
                run.update(labels_per_class=per_class, seed=seed, labeled=int((labels >= 0).sum()))
                results["runs"].append(run)
                if checkpoint:
                    checkpoint(results)
                print(
                    f"N={per_class} seed={seed} {name:<18} fused {run['fused']['accuracy']:.4f} "
                    f"classifier {run['classifier']['accuracy']:.4f} ({run['seconds']:.0f} s)",
                    flush=True,
                )
    ceilings: list[tuple[str, dict]] = [(CEILING, {})] + (
        [(CEILING_GEOMETRY, {GEOMETRY: True})] if args.suite == "geometry" else []
    )
    for name, overrides in ceilings:
        if name not in args.methods:
            continue
        for seed in args.seeds:
            if (name, None, seed) in done:
                continue
            _overrides, train_x, eval_x = inputs(overrides)
            run = run_one(
                name,
                "supervised",
                {},
                train_x,
                truth,
                truth,
                class_text,
                eval_x,
                val_y,
                LoopConfig(**{**loop.to_dict(), "seed": seed}),
                device,
            )
            run.update(labels_per_class=None, seed=seed, labeled=len(truth))
            results["runs"].append(run)
            if checkpoint:
                checkpoint(results)
            print(f"{name} seed={seed} fused {run['fused']['accuracy']:.4f}", flush=True)
    if args.suite != "ssl":
        return results
    results["instance_cost"] = [instance_cost(len(truth), args.batch_size * args.unlabeled_ratio, device)]
    if device.type == "cuda":
        results["instance_cost"].append(
            instance_cost(len(truth), args.batch_size * args.unlabeled_ratio, torch.device("cpu"))
        )
    return results


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.mean(values) * 100
    if len(values) == 1:
        return f"{mean:.1f} (1 seed)"
    return f"{mean:.1f} ± {statistics.stdev(values) * 100:.1f}"


def render(results: dict) -> str:
    s = results["settings"]
    runs = results["runs"]
    suite = s.get("suite", "ssl")
    lines = [
        f"## {SUITES[suite][2]}",
        "",
        *([results["preface"], ""] if results.get("preface") else []),
        f"`python -m bench.ssl_benchmark{' --suite ' + suite if suite != 'ssl' else ''}` - {s['train_faces']:,} train faces (labels hidden except N per class), "
        f"{s['val_faces']:,} val faces (PublicTest). Encoder: {s['encoder']}. Every method: {s['steps']} steps, "
        f"batch {s['batch_size']} labeled + {s['batch_size'] * s['unlabeled_ratio']} unlabeled, AdamW, "
        f"cosine schedule, EMA teacher; {s['strong_views']} cached strong views + feature dropout as the strong "
        f"view. Seeds {', '.join(map(str, s['seeds']))} (the seed picks the labeled faces and the training "
        f"randomness). Reported: the EMA model at the last step; nothing is selected on val. "
        f"Device: {s['device']}; machine: {s['machine']}; torch {s['torch']}. "
        f"Feature cache ready in {s['feature_seconds']:.0f} s (computed on first use, read afterwards).",
        "",
        "Val accuracy and balanced accuracy in %, mean ± sd over seeds; `fused` is the method's fused "
        "prediction (for the baselines it is their classifier).",
        "",
    ]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    for per_class in s["labels"]:
        lines += [
            f"### N = {per_class} labeled per class",
            "",
            "| method | fused acc | fused bal. acc | classifier acc | classifier bal. acc | train s |",
            "|---|---|---|---|---|---|",
        ]
        for name in methods:
            group = [r for r in runs if r["method"] == name and r["labels_per_class"] == per_class]
            if not group:
                continue
            lines.append(
                f"| {name} | {_mean_sd([r['fused']['accuracy'] for r in group])} | "
                f"{_mean_sd([r['fused']['balanced_accuracy'] for r in group])} | "
                f"{_mean_sd([r['classifier']['accuracy'] for r in group])} | "
                f"{_mean_sd([r['classifier']['balanced_accuracy'] for r in group])} | "
                f"{statistics.mean(r['seconds'] for r in group):.0f} |"
            )
        lines.append("")
    lines += _geometry_gain_rows(runs, s["labels"]) if suite == "geometry" else _paired_rows(runs, s["labels"])
    for name, what in ((CEILING, ""), (CEILING_GEOMETRY, ", with the face geometry")):
        ceiling = [r for r in runs if r["method"] == name]
        if ceiling:
            lines += [
                f"Ceiling, supervised on all {ceiling[0]['labeled']:,} train labels{what}: accuracy "
                f"{_mean_sd([r['fused']['accuracy'] for r in ceiling])}, balanced "
                f"{_mean_sd([r['fused']['balanced_accuracy'] for r in ceiling])}.",
                "",
            ]
    geometry = s.get("geometry")
    if geometry:
        lines += [
            f"Face meshes: normalisation `{geometry['normalisation']}`, gain {geometry['gain']}, "
            f"geometry version {geometry['version']}; faces without a mesh (their geometry is the "
            f"learned default): "
            + ", ".join(f"{k} {v:,}" for k, v in geometry["without_mesh"].items())
            + f"; meshes ready in {geometry['mesh_seconds']:.0f} s (computed on first use, read afterwards).",
            "",
        ]
    if suite in ("seeds", "geometry"):
        lines += _pseudo_label_rows_per_method(runs, s["labels"])
    pseudo = [r for r in runs if r["method"] == "sitfer" and "pseudo_labels" in r and suite == "ssl"]
    if pseudo:
        lines += [
            "### Pseudo-label precision against coverage (sitfer, unlabeled train faces, hidden truth)",
            "",
            "Faces ranked by confidence; precision (%) of the most confident share. Same model, "
            "fused prediction vs its semantic level alone.",
            "",
            "| N | prediction | 10% | 25% | 50% | 75% | 100% | passed threshold: share / precision |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for per_class in s["labels"]:
            group = [r for r in pseudo if r["labels_per_class"] == per_class]
            for kind in ("fused", "semantic"):
                cells = [
                    _mean_sd([r["pseudo_labels"][kind][c] for r in group]) for c in ("10%", "25%", "50%", "75%", "100%")
                ]
                passed = (
                    (
                        f"{_mean_sd([r['pseudo_labels']['passed_share'] for r in group])} / "
                        f"{_mean_sd([r['pseudo_labels']['passed_precision'] for r in group])}"
                    )
                    if kind == "fused"
                    else ""
                )
                lines.append(f"| {per_class} | {kind} | " + " | ".join(cells) + f" | {passed} |")
        lines.append("")
    tuning = results.get("tuning")
    if tuning:
        how = tuning.get("how_chosen") or (
            f"Before the runs above, on a dev split of {tuning['dev_faces']:,} train faces held out of "
            "training (val untouched), one seed, both N; the best mean dev accuracy was kept for sitfer "
            "and its ablations: `" + json.dumps(tuning["chosen"]) + "`."
        )
        lines += [
            "### How sitfer's settings were chosen",
            "",
            how,
            "",
            "| sitfer settings (changed from the defaults) | dev fused acc per N |",
            "|---|---|",
        ]
        for trial in tuning["grid"]:
            lines.append(
                f"| `{json.dumps(trial['overrides'])}` | "
                + ", ".join(f"{a * 100:.1f}" for a in trial["dev_fused_accuracy"])
                + " |"
            )
        lines.append("")
    costs = results.get("instance_cost", [])
    if costs:
        lines += [
            "### Cost of the instance level per batch",
            "",
            "| device | bank entries | queries | batched (one matrix product + per-class top-k) | Python loop over entries (as the reference code) |",
            "|---|---|---|---|---|",
        ]
        for c in costs:
            lines.append(
                f"| {c['device']} | {c['bank']:,} | {c['queries']} | {c['batched_ms']:.2f} ms | "
                f"{c['naive_loop_ms'] / 1000:.1f} s |"
            )
        lines.append("")
    return "\n".join(lines)


def _paired_rows(runs: list[dict], label_counts: list[int], method: str = "sitfer") -> list[str]:
    """`method` against every other method, seed by seed: runs of one seed share the labeled faces
    and the training seed, so their difference is less noisy than the spread of either."""
    by_key = {(r["method"], r["labels_per_class"], r["seed"]): r["fused"]["accuracy"] for r in runs}
    others = [m for m in dict.fromkeys(r["method"] for r in runs) if m not in (method, CEILING)]
    header = [
        f"### {method} against each method, paired by seed",
        "",
        f"Fused accuracy of {method} minus the other method's, in points, over the seeds both ran "
        f"(same labeled faces, same training seed): mean ± sd, and the seeds where {method} is ahead.",
        "",
        "| method | " + " | ".join(f"N = {n}" for n in label_counts) + " |",
        "|---|" + "---|" * len(label_counts),
    ]
    rows = []
    for other in others:
        cells = []
        for n in label_counts:
            seeds = sorted(seed for (m, pc, seed) in by_key if m == method and pc == n and (other, n, seed) in by_key)
            cells.append(_paired_cell([(by_key[(method, n, seed)] - by_key[(other, n, seed)]) * 100 for seed in seeds]))
        rows.append(f"| {other} | " + " | ".join(cells) + " |")
    return header + rows + [""] if rows else []


def _paired_cell(diffs: list[float]) -> str:
    """Paired differences in points: mean ± sd (the count ahead of n), or "-" for none."""
    if not diffs:
        return "-"
    spread = f" ± {statistics.stdev(diffs):.1f}" if len(diffs) > 1 else ""
    return f"{statistics.mean(diffs):+.1f}{spread} ({sum(d > 0 for d in diffs)} of {len(diffs)})"


def _geometry_gain_rows(runs: list[dict], label_counts: list[int]) -> list[str]:
    """Each method with the face geometry minus the same method without, seed by seed."""
    by_key = {(r["method"], r["labels_per_class"], r["seed"]): r["fused"]["accuracy"] for r in runs}
    bases = [
        name
        for name in dict.fromkeys(r["method"] for r in runs)
        if f"{name} + geometry" in {r["method"] for r in runs} and not name.startswith(CEILING)
    ]
    lines = [
        "### What the geometry adds, paired by seed",
        "",
        "Fused accuracy with the face geometry minus without it, in points, same method, labeled faces and "
        "training seed: mean ± sd, and the seeds where the geometry helped.",
        "",
        "| method | " + " | ".join(f"N = {n}" for n in label_counts) + " |",
        "|---|" + "---|" * len(label_counts),
    ]
    for base in bases:
        cells = []
        for n in label_counts:
            cells.append(
                _paired_cell(
                    [
                        (by_key[(f"{base} + geometry", n, seed)] - value) * 100
                        for (m, pc, seed), value in sorted(by_key.items(), key=lambda kv: kv[0][2])
                        if m == base and pc == n and (f"{base} + geometry", n, seed) in by_key
                    ]
                )
            )
        lines.append(f"| {base} | " + " | ".join(cells) + " |")
    return lines + [""]


def _pseudo_label_rows_per_method(runs: list[dict], label_counts: list[int]) -> list[str]:
    """Each method's own pseudo-labels on the unlabeled train faces against the hidden truth."""
    methods = list(dict.fromkeys(r["method"] for r in runs if "pseudo_labels" in r))
    if not methods:
        return []
    lines = [
        "### Pseudo-labels of each method (unlabeled train faces, hidden truth)",
        "",
        "Faces ranked by the method's fused confidence; precision (%) of the most confident share, and "
        "the share of faces passing the method's threshold at the end with their precision.",
        "",
        "| N | method | 10% | 25% | 50% | 100% | passed: share / precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for per_class in label_counts:
        for name in methods:
            group = [
                r for r in runs if r["method"] == name and r["labels_per_class"] == per_class and "pseudo_labels" in r
            ]
            if not group:
                continue
            cells = [_mean_sd([r["pseudo_labels"]["fused"][c] for r in group]) for c in ("10%", "25%", "50%", "100%")]
            lines.append(
                f"| {per_class} | {name} | " + " | ".join(cells) + " | "
                f"{_mean_sd([r['pseudo_labels']['passed_share'] for r in group])} / "
                f"{_mean_sd([r['pseudo_labels']['passed_precision'] for r in group])} |"
            )
    return lines + [""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--labels", type=lambda t: [int(v) for v in t.split(",")], default=[25, 100])
    parser.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2])
    parser.add_argument(
        "--suite",
        choices=sorted(SUITES),
        default="ssl",
        help="ssl: sitfer, its ablations and baselines; seeds: sitfer, leaf and dta-snl side by side",
    )
    parser.add_argument("--methods", type=lambda t: t.split(";"), default=None, help="';'-separated method names")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--unlabeled-ratio", type=int, default=3)
    parser.add_argument("--strong-views", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--encoder", default="offline", help="offline for the reported numbers; tiny for a smoke test")
    parser.add_argument("--json-out", type=Path, help="results JSON, rewritten after every run")
    parser.add_argument("--text-cache", type=Path, help="folder holding the class text embeddings cache")
    parser.add_argument("--resume-json", type=Path, help="skip the runs already in this results file")
    parser.add_argument("--tune", action="store_true", help="choose sitfer's settings on a dev split of train first")
    parser.add_argument(
        "--tuning-grid",
        type=json.loads,
        default=None,
        help="with --tune: a JSON list of sitfer setting overrides to try instead of the built-in grid",
    )
    parser.add_argument("--render", type=Path, help="render saved results into docs/benchmarks.md and exit")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.methods is None:
        args.methods = list(SUITES[args.suite][0]) + [CEILING, CEILING_GEOMETRY]
    results = saved_or_run(args, run_benchmark)
    body = render(results)
    print(body)
    if not args.no_write:  # saved results name their own suite
        write_section(SUITES[results["settings"].get("suite", "ssl")][1], body, rendered_only=bool(args.render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
