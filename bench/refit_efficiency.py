"""Label efficiency with live refits: a simulated annotator on FER2013 whose model is refitted
every 20 corrections, against rounds of 100 corrections each followed by a model trained from
scratch, and against a queue that is never refreshed.

Protocol (as bench.active_learning, whose round model it shares): start from N = 25 labeled
faces per class of FER2013 train (drawn with the seed from the hidden truth); the annotator
answers, from the hidden truth, the faces the current model's margin queue (the studio's default)
puts first. Three ways to keep the model current, each from the same first model and labels:

- `static`: the first model's queue, never refreshed (the floor); its accuracy is that of a model
  trained from scratch on its labels at each mark.
- `rounds of 100`: after every 100 corrections a model trained from scratch on all labels
  (bench.active_learning's round: sitfer's head on the labeled faces, 1,000 steps).
- `refit every 20`: after every 20 corrections the current model is refitted warm, exactly as
  `main.py refit` and the studio's live refit do (core/training/refit.py's `warm_start`: the
  parent's head, teacher, optimiser and memory bank with the new labels, `refit_steps` steps at
  half the learning rate, the teacher's window fitted to the refit), each refit the parent of the next.

Val accuracy (FER2013 PublicTest, the EMA teacher's fused prediction) after 0, 100, ..., 500
corrections, 3 seeds: of the arm's own model, and of a model trained from scratch on the arm's
labels (what the labels are worth, apart from how the model was kept); each arm's compute time
too (the from-scratch models at the marks are not counted). The model is the active-learning benchmark's
supervised head (no unlabeled batches), so that 3 arms x 3 seeds fit in minutes; the studio's
refits also draw unlabeled batches.

    python -m bench.refit_efficiency --json-out docs/results/refit_efficiency.json
    python -m bench.refit_efficiency --render docs/results/refit_efficiency.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.active_learning import THRESHOLDS, in_memory_context, train_round
from bench.fer_project import DEFAULT_ROOT, load_benchmark_data
from bench.report import machine_summary, publish, saved_or_run
from bench.ssl_benchmark import labeled_subset
from core.active.queue import STRATEGIES
from core.classes import class_names
from core.threads import configure_threads
from core.training.data import FaceTable
from core.training.head import build_head_trainer
from core.training.inference import predict
from core.training.loop import LoopConfig
from core.training.refit import refit_steps, warm_start
from core.training.settings import TrainSettings
from core.training.worker import choose_device

SECTION = "refit-efficiency"
ARMS = ("static", "rounds of 100", "refit every 20")
STRATEGY = "margin"


class Annotator:
    """The labels so far and the current model of one arm; `answer` labels the queue's first faces."""

    def __init__(self, features, truth, labels, class_text, seed: int, steps: int, device):
        self.features, self.truth, self.labels = features, truth, labels.copy()
        self.class_text, self.seed, self.steps, self.device = class_text, seed, steps, device
        self.trainer = train_round(features, self.labels, class_text, seed, steps, device)
        self.refits = 0
        self.compute_s = 0.0

    def answer(self, count: int, round_seed: int) -> None:
        pool = np.flatnonzero(self.labels < 0)
        started = time.perf_counter()
        preds = predict(
            self.trainer.ema.module,
            self.trainer.algorithm,
            torch.from_numpy(self.features[pool, 0]),
            self.trainer.step,
            exclude=torch.from_numpy(pool),
        )
        ranking = STRATEGIES[STRATEGY].rank(in_memory_context(preds, pool), count, round_seed)
        self.compute_s += time.perf_counter() - started
        picked = pool[ranking.rows]
        self.labels[picked] = self.truth[picked]

    def retrain(self) -> None:
        started = time.perf_counter()
        self.trainer = train_round(self.features, self.labels, self.class_text, self.seed, self.steps, self.device)
        self.compute_s += time.perf_counter() - started

    def refit(self, parent_labels: np.ndarray) -> int:
        """One live refit of the current model with the current labels; returns its steps."""
        started = time.perf_counter()
        parent = self.trainer
        state = {**parent.state_dict(), "train_face_ids": torch.arange(len(self.labels))}
        steps = refit_steps(int((self.labels >= 0).sum()), parent.config.batch_size)
        settings = TrainSettings(
            algorithm="sitfer",
            method=THRESHOLDS["dta"],
            loop=LoopConfig(steps=parent.step + steps, unlabeled_ratio=0, seed=self.seed),
        )
        trainer = build_head_trainer(self.features, self.labels, self.class_text, settings, self.device)
        ids = np.arange(len(self.labels), dtype=np.int64)
        faces = FaceTable(ids, np.full(len(ids), "train", dtype=object), self.labels, [], [], [], [])
        names = class_names()
        parent_named = {int(i): names[c] for i, c in enumerate(parent_labels) if c >= 0}
        self.refits += 1
        warm_start(trainer, state, faces, ids, self.labels, parent_named, steps, seed=self.seed + self.refits)
        trainer.run()
        self.trainer = trainer
        self.compute_s += time.perf_counter() - started
        return steps

    def accuracy(self, val_x, val_y) -> float:
        val = predict(self.trainer.ema.module, self.trainer.algorithm, val_x, self.trainer.step)
        return float((val.fused.argmax(1) == val_y).mean())


def simulate(arm: str, data, start: np.ndarray, seed: int, total: int, steps: int, device) -> dict:
    """One arm; at every 100 corrections the accuracy of the arm's own model (for `static`, which
    has none but the first, a model trained from scratch on its labels) and of a model trained
    from scratch on the arm's labels (the labels' worth apart from how the model was kept)."""
    annotator = Annotator(data.features, data.truth, start, data.class_text, seed, steps, device)
    first = annotator.accuracy(data.val_x, data.val_y)
    curve = [{"corrections": 0, "accuracy": first, "retrained": first}]
    first_model_s = annotator.compute_s
    chunk = 20 if arm == "refit every 20" else 100
    refit_step_counts = []
    done = 0
    while done < total:
        before = annotator.labels.copy()
        annotator.answer(chunk, seed * 1000 + done)
        done += chunk
        if arm == "rounds of 100":
            annotator.retrain()
        elif arm == "refit every 20":
            refit_step_counts.append(annotator.refit(before))
        if done % 100 == 0:
            fresh = train_round(data.features, annotator.labels, data.class_text, seed, steps, device)
            retrained = float(
                (
                    predict(fresh.ema.module, fresh.algorithm, data.val_x, fresh.step).fused.argmax(1) == data.val_y
                ).mean()
            )
            own = retrained if arm == "static" else annotator.accuracy(data.val_x, data.val_y)
            curve.append({"corrections": done, "accuracy": own, "retrained": retrained})
    return {
        "arm": arm,
        "seed": seed,
        "curve": curve,
        "compute_s": round(annotator.compute_s - first_model_s, 1),
        "refits": annotator.refits,
        "refit_steps": refit_step_counts,
    }


def run(args, save) -> dict:
    plan = configure_threads("worker")
    device = choose_device(args.device)
    data = load_benchmark_data(args.project, "offline", 2, None)
    results: dict = {
        "settings": {
            "start_per_class": args.start,
            "corrections": args.corrections,
            "steps": args.steps,
            "seeds": args.seeds,
            "strategy": STRATEGY,
            "machine": machine_summary(),
            "threads": plan.describe(),
            "train_faces": len(data.truth),
            "val_faces": len(data.val_y),
            "note": args.note,
        },
        "runs": [],
    }
    for seed in args.seeds:
        start = labeled_subset(data.truth, data.ids, args.start, seed)
        for arm in args.arms:
            began = time.perf_counter()
            result = simulate(arm, data, start, seed, args.corrections, args.steps, device)
            result["wall_s"] = round(time.perf_counter() - began, 1)
            results["runs"].append(result)
            print(
                f"seed {seed} {arm:<15} "
                + " ".join(f"{p['accuracy'] * 100:.1f}/{p['retrained'] * 100:.1f}" for p in result["curve"])
                + f"  ({result['compute_s']:.0f} s)",
                flush=True,
            )
            if save:
                save(results)
    return results


def _cells(runs: list[dict], marks: list[int], key: str) -> list[str]:
    cells = []
    for m in marks:
        values = [100 * p[key] for r in runs for p in r["curve"] if p["corrections"] == m]
        cells.append(f"{statistics.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})" if values else "")
    return cells


def _paired(results: dict, mark: int, key: str) -> str:
    """refit every 20 minus rounds of 100 at `mark`, seed by seed, in points."""
    by = {(r["arm"], r["seed"]): {p["corrections"]: p[key] for p in r["curve"]} for r in results["runs"]}
    diffs = [
        100 * (by[("refit every 20", seed)][mark] - by[("rounds of 100", seed)][mark])
        for seed in results["settings"]["seeds"]
        if ("refit every 20", seed) in by and ("rounds of 100", seed) in by and mark in by[("rounds of 100", seed)]
    ]
    return ", ".join(f"{d:+.1f}" for d in diffs)


def _span(values: list[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def render(results: dict) -> str:
    s = results["settings"]
    marks = sorted({p["corrections"] for r in results["runs"] for p in r["curve"]})
    shown = [m for m in marks if m in (0, 100, 300, 500)] or marks
    head = "| arm | " + " | ".join(f"after {m}" for m in shown) + " |"
    rule = "|---|" + "---:|" * len(shown)
    own = [head + " models trained | compute s |", rule + "---|---:|"]
    scratch = [head, rule]
    for arm in ARMS:
        runs = [r for r in results["runs"] if r["arm"] == arm]
        if not runs:
            continue
        steps = runs[0]["refit_steps"]
        models = {
            "static": "none after the first",
            "rounds of 100": str(s["corrections"] // 100),
            "refit every 20": f"{runs[0]['refits']} refits ({_span(steps)} steps each)" if steps else "0",
        }[arm]
        own.append(
            f"| {arm} | " + " | ".join(_cells(runs, shown, "accuracy")) + f" | {models} | "
            f"{statistics.median(r['compute_s'] for r in runs):.0f} |"
        )
        scratch.append(f"| {arm} | " + " | ".join(_cells(runs, shown, "retrained")) + " |")
    later = [m for m in shown if m > 0]
    paired = "; ".join(f"after {m}: {_paired(results, m, 'accuracy')}" for m in later)
    return "\n".join(
        [
            "## Label efficiency with live refits (`python -m bench.refit_efficiency`)",
            "",
            f"FER2013 train ({s['train_faces']:,} faces) from {s['start_per_class']} labeled per class; a simulated "
            f"annotator answers the {s['strategy']} queue's first faces from the hidden truth, {s['corrections']} "
            f"corrections in all; val accuracy in % on FER2013 PublicTest ({s['val_faces']:,} faces; the EMA teacher's "
            f"fused prediction), mean (min-max) over seeds {', '.join(map(str, s['seeds']))}. The model: sitfer's head "
            f"trained on the labeled faces ({s['steps']} steps from scratch, as bench.active_learning's rounds); a refit "
            "warm-starts it exactly as `main.py refit` does (core/training/refit.py). `static`: the first model's queue "
            "is never refreshed. Compute: seconds of training, refits, predictions and ranking after the first model, "
            f"median over seeds. Machine: {s['machine']}; {s['threads']}. {s.get('note', '')}",
            "",
            "**The arm's own model** (static: a model trained from scratch on its labels at each mark)",
            "",
            *own,
            "",
            "**A model trained from scratch on the arm's labels** (what the picked labels are worth)",
            "",
            *scratch,
            "",
            f"Refit every 20 minus rounds of 100, own models, seed by seed (points): {paired}.",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2])
    parser.add_argument("--arms", type=lambda t: t.split(","), default=list(ARMS))
    parser.add_argument("--start", type=int, default=25, help="labeled faces per class at the start")
    parser.add_argument("--corrections", type=int, default=500)
    parser.add_argument("--steps", type=int, default=1000, help="steps of a model trained from scratch")
    parser.add_argument("--device", default=None)
    parser.add_argument("--note", default="", help="what else ran, for the section")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--render", type=Path, help="render saved results and exit")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    unknown = set(args.arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(sorted(unknown))}; of {', '.join(ARMS)}")
    return publish(SECTION, render(saved_or_run(args, run)), args)


if __name__ == "__main__":
    sys.exit(main())
