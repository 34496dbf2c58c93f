"""Simulated annotator on FER2013 (the active-learning issue): how many corrections each review
queue strategy needs to reach a good model.

Protocol: start from N = 25 labeled faces per class of FER2013 train (drawn with the seed from
the hidden ground truth); each round, train in head mode on the current labels, rank the
unlabeled train faces with a strategy (`core.active`, the same ranking functions as the studio's
queue and `main.py queue`), answer its first 100 from the hidden ground truth, and retrain;
10 rounds, 3 seeds, val accuracy (FER2013 PublicTest) after every round. Every strategy starts
from the same labeled faces and trains with the same seeds.

The model of each round is sitfer's head (semantic classifier, text projection, instance bank)
trained on the labeled faces only (no unlabeled losses: 1000 steps, about 10 s on a 2-core CPU,
against about 2 minutes for a full semi-supervised run), so 7 strategies x 3 seeds x 11 rounds
fit in one sitting. It still gives the three levels the disagreement strategy compares.

    python -m bench.active_learning                 # full protocol; writes docs/benchmarks.md and the plot
    python -m bench.active_learning --render r.json # results JSON -> docs section and plot
    python -m bench.active_learning --strategies near_threshold --thresholds fixed --json-out f.json
                                                    # rounds ranked against sitfer's fixed 0.95 (own row)
    python -m bench.active_learning --strategies oracle_near_errors,oracle_hardest --json-out o.json
                                                    # ground-truth references (bench-only, see ORACLE_NOTES)
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
from bench.report import REPO, machine_summary, saved_or_run, write_section
from bench.ssl_benchmark import labeled_subset
from core.active.data import RunPredictions
from core.active.queue import STRATEGIES, QueueContext
from core.ssl.algorithms import MethodConfig
from core.training.head import build_head_trainer
from core.training.inference import predict
from core.training.loop import LoopConfig
from core.training.settings import TrainSettings
from core.training.worker import choose_device

STRATEGY_ORDER = [
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "disagreement",
    "near_threshold",
    "diversity",
    "badge",
    "typical_margin",
]
PLOT = REPO / "docs" / "results" / "active_learning_fer2013_grid.png"  # the current section's plot
COLOURS = {
    "random": (120, 120, 120),
    "least_confidence": (31, 119, 180),
    "margin": (255, 127, 14),
    "entropy": (44, 160, 44),
    "disagreement": (214, 39, 40),
    "near_threshold": (148, 103, 189),
    "diversity": (140, 86, 75),
    "badge": (23, 190, 207),
    "typical_margin": (227, 119, 194),
    "runner_up": (188, 189, 34),
    "oracle_near_errors": (0, 0, 0),
    "oracle_hardest": (90, 90, 90),
}
# Bench-only rankings, never in the studio's registry. The oracle_* references read the hidden
# ground truth: they pick the faces the round model gets wrong, which no real queue can know, and
# so bound what a queue that targets the model's errors could save with this round model.
# runner_up is a trial that lost on the dev split (docs/results/active_learning_fer2013_dev.json).
ORACLE_NOTES = {
    "oracle_near_errors": "the misclassified faces whose true class is closest behind the prediction",
    "oracle_hardest": "the faces with the lowest probability on their true class (the most confidently wrong)",
}
TRIAL_NOTES = {
    "runner_up": "the highest fused probability of the second most probable class (under a calibrated model, "
    "the likeliest errors whose true class is the runner-up)",
}
BENCH_ONLY = {**ORACLE_NOTES, **TRIAL_NOTES}
DEV_FACES = 2000  # --dev: train faces held out of the pool to choose strategies on (val untouched)
DEV_SEED = 100


THRESHOLDS = {
    # DTA on, as the main table was measured: with no unlabeled batches its thresholds stay at
    # the floor (0.5), which near_threshold ranks against.
    "dta": MethodConfig(dynamic_threshold=True),
    # sitfer's default since DTA was turned off for it: the fixed 0.95 a studio run ranks against.
    "fixed": MethodConfig(dynamic_threshold=False),
}


def run_label(run: dict) -> str:
    """A run's row in the table: its strategy, and the thresholds where they are not DTA's."""
    kind = run.get("thresholds", "dta")
    return run["strategy"] if kind == "dta" else f"{run['strategy']} (fixed {MethodConfig().threshold:g})"


def train_round(features, labels, class_text, seed: int, steps: int, device, thresholds: str = "dta"):
    settings = TrainSettings(
        algorithm="sitfer", method=THRESHOLDS[thresholds], loop=LoopConfig(steps=steps, unlabeled_ratio=0, seed=seed)
    )
    trainer = build_head_trainer(features, labels, class_text, settings, device)
    trainer.run()
    return trainer


def bench_only_rank(name: str, fused: np.ndarray, truth: np.ndarray, limit: int) -> np.ndarray:
    """Rows of the pool a bench-only ranking picks first (ORACLE_NOTES, TRIAL_NOTES)."""
    rows = np.arange(len(truth))
    if name == "runner_up":  # reads no truth
        return np.lexsort((rows, -np.sort(fused, axis=1)[:, -2]))[:limit]
    p_true = fused[rows, truth]
    if name == "oracle_hardest":
        order = np.lexsort((rows, p_true))
    elif name == "oracle_near_errors":
        # Correct faces sort after every error (gap + 2 > any gap), least sure first.
        top2 = np.sort(fused, axis=1)[:, -2:]
        wrong = fused.argmax(1) != truth
        key = np.where(wrong, fused.max(1) - p_true, 2.0 + top2[:, 1] - top2[:, 0])
        order = np.lexsort((rows, key))
    else:
        raise ValueError(f"unknown bench-only ranking {name!r}; choose one of {', '.join(BENCH_ONLY)}")
    return order[:limit]


def in_memory_context(preds, pool: np.ndarray) -> QueueContext:
    """The queue's context over the unlabeled pool, straight from a model's predictions (the
    studio reads the same arrays from the store)."""
    n = len(pool)
    levels = {
        name: getattr(preds, name) for name in ("semantic", "text", "instance") if getattr(preds, name) is not None
    }
    run = RunPredictions(
        run_id=0,
        face_ids=pool.astype(np.int64),
        splits=np.full(n, "train", dtype=object),
        labels=np.full(n, None, dtype=object),
        label_sources=np.full(n, None, dtype=object),
        fused=preds.fused.astype(np.float64),
        levels={k: v.astype(np.float64) for k, v in levels.items()},
        predicted=preds.pseudo_label.astype(np.int64),
        confidence=preds.confidence.astype(np.float64),
        passed=preds.passed,
        thresholds=preds.thresholds.astype(np.float64),
    )
    return QueueContext.of(run, None, embeddings=preds.embedding)


def simulate(
    strategy: str,
    features,
    truth,
    start_labels,
    class_text,
    val_x,
    val_y,
    seed: int,
    rounds: int,
    per_round: int,
    steps: int,
    device,
    thresholds: str = "dta",
) -> dict:
    labels = start_labels.copy()
    curve, timings = [], []
    for round_ in range(rounds + 1):
        started = time.perf_counter()
        trainer = train_round(features, labels, class_text, seed, steps, device, thresholds)
        trained = time.perf_counter()
        val = predict(trainer.ema.module, trainer.algorithm, val_x, trainer.step)
        curve.append(
            {
                "round": round_,
                "labeled": int((labels >= 0).sum()),
                "accuracy": float((val.fused.argmax(1) == val_y).mean()),
            }
        )
        if round_ == rounds:
            timings.append({"train_s": trained - started, "rank_s": 0.0})
            break
        pool = np.flatnonzero(labels < 0)
        preds = predict(
            trainer.ema.module,
            trainer.algorithm,
            torch.from_numpy(features[pool, 0]),
            trainer.step,
            exclude=torch.from_numpy(pool),
        )
        if strategy in BENCH_ONLY:
            picked = pool[bench_only_rank(strategy, preds.fused, truth[pool], per_round)]
        else:
            ranking = STRATEGIES[strategy].rank(in_memory_context(preds, pool), per_round, seed * 1000 + round_)
            picked = pool[ranking.rows]
        labels[picked] = truth[picked]  # the simulated annotator answers from the hidden truth
        timings.append(
            {"train_s": trained - started, "rank_s": time.perf_counter() - trained}
        )  # rank_s: predict + rank
        curve[-1]["picked_classes"] = np.bincount(truth[picked], minlength=7).tolist()
    return {"strategy": strategy, "seed": seed, "thresholds": thresholds, "curve": curve, "timings": timings}


def run_benchmark(args, checkpoint=None) -> dict:
    device = choose_device(args.device)
    data = load_benchmark_data(args.project, args.encoder, 2, args.text_cache)
    encoder, class_text, features, truth, ids = data.encoder, data.class_text, data.features, data.truth, data.ids
    val_x, val_y = data.val_x, data.val_y
    evaluated_on = "val"
    if args.dev:  # choose between strategies here, never on val
        dev = np.zeros(len(truth), bool)
        dev[np.random.default_rng(DEV_SEED).choice(len(truth), size=DEV_FACES, replace=False)] = True
        val_x, val_y = torch.from_numpy(features[dev, 0]), truth[dev]
        features, truth, ids = features[~dev], truth[~dev], ids[~dev]
        evaluated_on = f"dev: {DEV_FACES} train faces held out of the pool (seed {DEV_SEED})"
    results: dict = {
        "settings": {
            "start_per_class": args.start,
            "rounds": args.rounds,
            "per_round": args.per_round,
            "steps": args.steps,
            "seeds": args.seeds,
            "strategies": args.strategies,
            "device": str(device),
            "machine": machine_summary(),
            "torch": torch.__version__,
            "encoder": encoder.describe(),
            "train_faces": len(truth),
            "val_faces": len(val_y),
            "evaluated_on": evaluated_on,
        },
        "runs": [],
    }
    done = set()
    if args.resume_json and args.resume_json.is_file():
        results["runs"] = json.loads(args.resume_json.read_text())["runs"]
        done = {(run_label(r), r["seed"]) for r in results["runs"]}
    for seed in args.seeds:
        start = labeled_subset(truth, ids, args.start, seed)
        for strategy in args.strategies:
            if (run_label({"strategy": strategy, "thresholds": args.thresholds}), seed) in done:
                continue
            run = simulate(
                strategy,
                features,
                truth,
                start,
                class_text,
                val_x,
                val_y,
                seed,
                args.rounds,
                args.per_round,
                args.steps,
                device,
                args.thresholds,
            )
            results["runs"].append(run)
            if checkpoint:
                checkpoint(results)
            print(
                f"seed {seed} {strategy:<16} " + " ".join(f"{p['accuracy'] * 100:.1f}" for p in run["curve"]),
                flush=True,
            )
    return results


def mean_curves(results: dict) -> dict[str, np.ndarray]:
    curves: dict[str, list[list[float]]] = {}
    for run in results["runs"]:
        curves.setdefault(run_label(run), []).append([p["accuracy"] for p in run["curve"]])
    return {name: np.array(values) for name, values in curves.items()}


def corrections_to_reach(curve: np.ndarray, target: float, per_round: int) -> float | None:
    """Corrections (linear between rounds) at which a mean accuracy curve first reaches target."""
    for r in range(len(curve)):
        if curve[r] >= target:
            if r == 0:
                return 0.0
            fraction = (target - curve[r - 1]) / max(curve[r] - curve[r - 1], 1e-12)
            return per_round * (r - 1 + fraction)
    return None


def per_seed_shares(results: dict, name: str) -> list[str]:
    """Seed by seed, the corrections a row needs to reach that seed's own random round-10
    accuracy, as a share of the corrections random needs for it ("-" where not reached):
    how steady a strategy's lead is, which the mean curves hide."""
    s = results["settings"]
    runs = {(run_label(run), run["seed"]): [p["accuracy"] for p in run["curve"]] for run in results["runs"]}
    shares = []
    for seed in sorted(seed for label, seed in runs if label == name):
        baseline = runs.get(("random", seed))
        if baseline is None:
            continue
        target = baseline[s["rounds"]]
        random_need = corrections_to_reach(np.array(baseline), target, s["per_round"])
        need = corrections_to_reach(np.array(runs[(name, seed)]), target, s["per_round"])
        shares.append("-" if need is None else f"{need / random_need:.0%}" if random_need else "0%")
    return shares


def seeds_of(results: dict, name: str) -> list[int]:
    return sorted(run["seed"] for run in results["runs"] if run_label(run) == name)


def random_reference(results: dict, seeds: list[int]) -> tuple[float | None, float | None]:
    """Random's mean round-10 accuracy over `seeds` and the corrections its mean curve needs to
    first reach it (its curve may get there before the last round); None where random lacks a seed."""
    runs = {run["seed"]: [p["accuracy"] for p in run["curve"]] for run in results["runs"] if run_label(run) == "random"}
    if not seeds or any(seed not in runs for seed in seeds):
        return None, None
    curve = np.array([runs[seed] for seed in seeds]).mean(0)
    target = float(curve[results["settings"]["rounds"]])
    return target, corrections_to_reach(curve, target, results["settings"]["per_round"])


def render(results: dict, plot_path: Path = PLOT) -> str:
    s = results["settings"]
    curves = mean_curves(results)
    order = [name for name in STRATEGY_ORDER if name in curves] + sorted(set(curves) - set(STRATEGY_ORDER))
    rounds = s["rounds"]
    seeds = sorted({run["seed"] for run in results["runs"]})
    random_seeds = seeds_of(results, "random")
    evaluated = "Val" if s.get("evaluated_on", "val") == "val" else f"Dev ({s['evaluated_on']})"
    lines = [
        "## Active learning: a simulated annotator on FER2013",
        "",
        *([results["preface"], ""] if results.get("preface") else []),
        f"`python -m bench.active_learning` - start from {s['start_per_class']} labeled faces per class of "
        f"FER2013 train ({s['train_faces']:,} faces, the rest unlabeled); each round a strategy ranks the "
        f"unlabeled faces, the first {s['per_round']} are answered from the hidden ground truth, and the model "
        f"is retrained; {rounds} rounds; seeds {', '.join(map(str, seeds))} (the seed picks the starting "
        f"labels and the training randomness; every strategy starts from the same labels). Model of each round: "
        f"sitfer's head in head mode on the labeled faces only ({s['steps']} steps; semantic, text and instance "
        f"levels, no unlabeled losses, for time), encoder {s['encoder']}. {evaluated} accuracy ({s['val_faces']:,} faces, "
        f"fused prediction, EMA model at the last step). Device {s['device']}; {s['machine']}; torch {s['torch']}.",
        "",
        f"![accuracy per round](results/{plot_path.name})",
        "",
        "| strategy | " + " | ".join(f"r{r}" for r in range(rounds + 1)) + " | corrections to reach random's r"
        f"{rounds} | each seed against its own random | s per round: train + (predict + rank) |",
        "|---|" + "---|" * (rounds + 1) + "---|---|---|",
    ]
    for name in order:
        values = curves[name]
        cells = []
        for r in range(rounds + 1):
            col = values[:, r] * 100
            cells.append(f"{col.mean():.1f}" + (f" ± {col.std(ddof=1):.1f}" if len(col) > 1 else ""))
        # Against random over the same seeds, so a row run at fewer seeds is compared like for like.
        row_seeds = seeds_of(results, name)
        target, random_need = random_reference(results, row_seeds)
        need = corrections_to_reach(values.mean(0), target, s["per_round"]) if target is not None else None
        need_text = "not reached" if need is None else f"{need:.0f}"
        if need is not None and name != "random" and random_need:
            need_text += f" ({need / random_need:.0%} of random's)"
        if target is not None and name != "random" and row_seeds != random_seeds:
            need_text += (
                f"; random at seeds {', '.join(map(str, row_seeds))}: {target * 100:.1f} after {random_need:.0f}"
            )
        runs = [run for run in results["runs"] if run_label(run) == name]
        timings = [t["train_s"] + t["rank_s"] for run in runs for t in run["timings"][:-1]]
        rank_only = [t["rank_s"] for run in runs for t in run["timings"][:-1]]
        shares = "-" if name == "random" else ", ".join(per_seed_shares(results, name)) or "-"
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {need_text} | {shares} | "
            f"{statistics.mean(timings):.1f} ({statistics.mean(rank_only):.1f}) |"
        )
    lines += [
        "",
        f"{evaluated.split(' (')[0]} accuracy in % after each round (r0: the starting labels), mean ± sd over seeds. "
        "\"Corrections to reach\": where the strategy's mean curve first reaches random's mean accuracy "
        f"after {rounds * s['per_round']} corrections (over the same seeds as the strategy's row), interpolated "
        "linearly between rounds, and as a share of the corrections random's mean curve needs to first reach "
        'it. "Each seed against '
        "its own random\": the same, seed by seed (in seed order), against that seed's random run, as a share "
        'of the corrections random needs to get there ("-": not reached in '
        f"{rounds} rounds).",
        "",
    ]
    trials = [name for name in order if name in TRIAL_NOTES]
    if trials:
        lines += [
            "Bench-only trials, not queue strategies of the studio: "
            + "; ".join(f"`{name}`: {TRIAL_NOTES[name]}" for name in trials)
            + ".",
            "",
        ]
    oracles = [name for name in order if name in ORACLE_NOTES]
    if oracles:
        lines += [
            "Rows named oracle_* are not queue strategies: they read the hidden ground truth, which no "
            "queue can, and pick "
            + "; ".join(f"`{name}`: {ORACLE_NOTES[name]}" for name in oracles)
            + ". They show how far a queue that found exactly the round model's errors could go.",
            "",
        ]
    return "\n".join(lines)


def plot(results: dict, path: Path = PLOT) -> Path:
    """The curves as a PNG, drawn with pyqtgraph offscreen (the studio's plotting library)."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])  # noqa: F841 (keeps Qt alive while exporting)
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    s = results["settings"]
    widget = pg.PlotWidget(title="FER2013: val accuracy per round of 100 simulated corrections")
    widget.resize(900, 560)
    widget.addLegend(offset=(10, 10))
    widget.setLabel("bottom", "corrections")
    widget.setLabel("left", "val accuracy (%)")
    widget.showGrid(x=True, y=True, alpha=0.3)
    curves = mean_curves(results)
    x = np.arange(s["rounds"] + 1) * s["per_round"]
    styles = pg.QtCore.Qt.PenStyle
    strategy_of = {run_label(run): run["strategy"] for run in results["runs"]}
    for name in [n for n in STRATEGY_ORDER if n in curves] + sorted(set(curves) - set(STRATEGY_ORDER)):
        base = strategy_of[name]  # a threshold variant is drawn dotted in its strategy's colour
        colour = COLOURS.get(base, (0, 0, 0))
        style = (
            styles.DashLine
            if name == "random"
            else styles.DashDotLine
            if base in ORACLE_NOTES
            else styles.SolidLine
            if name == base
            else styles.DotLine
        )
        pen = pg.mkPen(colour, width=3 if name != "random" else 2, style=style)
        widget.plot(x, curves[name].mean(0) * 100, pen=pen, name=name, symbol="o", symbolSize=5, symbolBrush=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Grabbed as laid out on screen: the image exporter rescales the fonts, and the bottom
    # axis title then overlapped its tick labels.
    widget.grab().save(str(path))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2])
    parser.add_argument("--strategies", type=lambda t: t.split(","), default=STRATEGY_ORDER)
    parser.add_argument("--start", type=int, default=25, help="labeled faces per class at the start")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--thresholds",
        choices=sorted(THRESHOLDS),
        default="dta",
        help="the round model's class thresholds: DTA (as the main table) or sitfer's fixed default",
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--encoder", default="offline")
    parser.add_argument("--text-cache", type=Path)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--resume-json", type=Path)
    parser.add_argument(
        "--dev",
        action="store_true",
        help=f"evaluate on {DEV_FACES} train faces held out of the pool instead of val, to choose "
        f"a strategy or setting without looking at val (implies --no-write)",
    )
    parser.add_argument("--render", type=Path, help="render saved results (docs section and plot) and exit")
    parser.add_argument("--plot", type=Path, default=PLOT, help="where the PNG of the curves goes (docs/results/)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    unknown = [s for s in args.strategies if s not in STRATEGIES and s not in BENCH_ONLY]
    if unknown:
        parser.error(
            f"unknown strategy {', '.join(unknown)}; choose from {', '.join([*STRATEGIES, *BENCH_ONLY])} "
            "(bench-only: the oracle_* references read the hidden ground truth; runner_up is a trial)"
        )
    args.no_write = args.no_write or args.dev
    results = saved_or_run(args, run_benchmark)
    body = render(results, args.plot)
    print(body)
    if not args.no_write:
        plot(results, args.plot)
        write_section("active-learning", body, rendered_only=bool(args.render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
