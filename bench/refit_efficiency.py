"""Label efficiency with live refits: a simulated annotator on FER2013 whose model is refitted
every 20 corrections, against rounds of 100 corrections each followed by a model trained from
scratch, and against a queue that is never refreshed.

Protocol (as bench.active_learning, whose round model it shares): start from N = 25 labeled
faces per class of FER2013 train (drawn with the seed from the hidden truth); the annotator
answers, from the hidden truth, the faces the current model's margin queue (the studio's default)
puts first. Three ways to keep the model current, each from the same first model and labels:

- `static`: the first model's queue, never refreshed (the floor).
- `rounds of 100`: after every 100 corrections a model trained from scratch on all labels
  (bench.active_learning's round: sitfer's head on the labeled faces, 1,000 steps).
- `refit every 20`: after every 20 corrections the current model is refitted warm, exactly as
  `main.py refit` and the studio's live refit do (core/training/refit.py's `warm_start`: the
  parent's head, teacher, optimiser and memory bank with the new labels, `refit_steps` steps at
  half the learning rate, the teacher's window fitted to the refit), each refit the parent of the next.

Val accuracy (FER2013 PublicTest, the EMA teacher's fused prediction) after 0, 100, ..., 500
corrections, 3 seeds; each arm's compute time too. The model is the active-learning benchmark's
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
        preds = predict(self.trainer.ema.module, self.trainer.algorithm, torch.from_numpy(self.features[pool, 0]),
                        self.trainer.step, exclude=torch.from_numpy(pool))
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
        settings = TrainSettings(algorithm="sitfer", method=THRESHOLDS["dta"],
                                 loop=LoopConfig(steps=parent.step + steps, unlabeled_ratio=0, seed=self.seed))
        trainer = build_head_trainer(self.features, self.labels, self.class_text, settings, self.device)
        ids = np.arange(len(self.labels), dtype=np.int64)
        faces = FaceTable(ids, np.full(len(ids), "train", dtype=object), self.labels, [], [], [])
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
    annotator = Annotator(data.features, data.truth, start, data.class_text, seed, steps, device)
    curve = [{"corrections": 0, "accuracy": annotator.accuracy(data.val_x, data.val_y)}]
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
            curve.append({"corrections": done, "accuracy": annotator.accuracy(data.val_x, data.val_y)})
    return {"arm": arm, "seed": seed, "curve": curve, "compute_s": round(annotator.compute_s - first_model_s, 1),
            "refits": annotator.refits, "refit_steps": refit_step_counts}


def run(args, save) -> dict:
    plan = configure_threads("worker")
    device = choose_device(args.device)
    data = load_benchmark_data(args.project, "offline", 2, None)
    results = {"settings": {"start_per_class": args.start, "corrections": args.corrections, "steps": args.steps,
                            "seeds": args.seeds, "strategy": STRATEGY, "machine": machine_summary(),
                            "threads": plan.describe(), "train_faces": int(len(data.truth)),
                            "val_faces": int(len(data.val_y)), "note": args.note}, "runs": []}
    for seed in args.seeds:
        start = labeled_subset(data.truth, data.ids, args.start, seed)
        for arm in args.arms:
            began = time.perf_counter()
            result = simulate(arm, data, start, seed, args.corrections, args.steps, device)
            result["wall_s"] = round(time.perf_counter() - began, 1)
            results["runs"].append(result)
            print(f"seed {seed} {arm:<15} " + " ".join(f"{p['accuracy'] * 100:.1f}" for p in result["curve"])
                  + f"  ({result['compute_s']:.0f} s)", flush=True)
            if save:
                save(results)
    return results


def render(results: dict) -> str:
    s = results["settings"]
    marks = sorted({p["corrections"] for r in results["runs"] for p in r["curve"]})
    shown = [m for m in marks if m in (0, 100, 300, 500)] or marks
    lines = ["## Label efficiency with live refits (`python -m bench.refit_efficiency`)", "",
             f"FER2013 train ({s['train_faces']:,} faces) from {s['start_per_class']} labeled per class; a simulated "
             f"annotator answers the {s['strategy']} queue's first faces from the hidden truth, "
             f"{s['corrections']} corrections in all; val accuracy in % on FER2013 PublicTest ({s['val_faces']:,} faces; "
             f"the EMA teacher's fused prediction), mean (min-max) over seeds {', '.join(map(str, s['seeds']))}. "
             f"The model: sitfer's head trained on the labeled faces ({s['steps']} steps from scratch, as "
             "bench.active_learning's rounds); a refit warm-starts it exactly as `main.py refit` does "
             "(core/training/refit.py). Compute: seconds of training, refits, predictions and ranking after the "
             f"first model, median over seeds. Machine: {s['machine']}; {s['threads']}. {s.get('note', '')}", "",
             "| arm | " + " | ".join(f"after {m}" for m in shown) + " | models trained | compute s |",
             "|---|" + "---:|" * (len(shown) + 2)]
    for arm in ARMS:
        runs = [r for r in results["runs"] if r["arm"] == arm]
        if not runs:
            continue
        cells = []
        for m in shown:
            values = [100 * p["accuracy"] for r in runs for p in r["curve"] if p["corrections"] == m]
            cells.append(f"{statistics.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})" if values else "")
        models = {"static": "0", "rounds of 100": str(s["corrections"] // 100),
                  "refit every 20": f"{runs[0]['refits']} refits ({min(runs[0]['refit_steps'])}-"
                                    f"{max(runs[0]['refit_steps'])} steps)" if runs[0]["refit_steps"] else "0"}[arm]
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {models} | "
                     f"{statistics.median(r['compute_s'] for r in runs):.0f} |")
    return "\n".join(lines)


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
