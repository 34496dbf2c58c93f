"""Suspected label errors on FER2013: how well the review queue's label_errors strategy finds
planted wrong labels, against ranking the labeled faces by a model trained on them.

Protocol: the labeled train faces of a trained FER2013 project (default /tmp/fer-predict: all
27,485 train faces labeled, run 1 sitfer in head mode with face geometry), N per class drawn with
the seed (the importer's draw, bench.ssl_benchmark.labeled_subset) or all of them; 10% of them get
a planted wrong label, either uniformly another class ("uniform") or the partner in the pairs
annotators confuse ("confusable": fear<->surprise, sadness<->neutral, disgust<->anger, drawn among
faces of those six classes). FER2013's own labels are noisy too; the planted labels are the
ground truth here, so a real FER2013 error found counts against precision. Rankings, each over
the same noisy labels and the face inputs the strategy reads (view 0 of the cached features
with the geometry):

- out of fold: `core.active.label_errors.check_labels`, ranked by label quality (the out-of-fold
  probability of the given label: what the strategy ranks by), and with cleanlab's flagged labels
  first (what it ranked by before this benchmark); cleanlab's flagged set as it is;
- in sample, the same logistic regression fitted on all the noisy labels (its C as chosen out of
  fold): by its probability of the given label, and by its margin;
- in sample, the studio's head (sitfer, labeled faces only, the steps `auto` gives that many
  labeled faces, every view as a run reads them), predicted as a run writes its predictions
  (each face leaving its own bank slot out): by the fused probability of the given label, and by
  the fused margin (what the `margin` strategy ranks by);
- random.

Metrics: precision at k = the number planted (equal to the recall there), at 50 and at 100;
3 seeds, mean and standard deviation. Also: C chosen on the first fold against a fixed grid
(N = 100 per class, seeds the table does not report), and the strategy end to end on the
project (a copy of its database, its caches linked): `build_queue(..., "label_errors")` over all
labeled train faces with nothing cached, then again.

    python -m bench.label_errors [--project /tmp/fer-predict] [--sizes 100,all] [--seeds 3]
        [--threads 1] [--note TEXT] [--no-write] [--json-out F | --render F]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.predict_throughput import machine_state
from bench.report import REPO, add_report_arguments, machine_summary, publish, saved_or_run

SECTION = "label-errors"
DEFAULT_PROJECT = Path(os.environ.get("FER_PREDICT_PROJECT", "/tmp/fer-predict"))
JSON_RESULTS = REPO / "docs" / "results" / "label_errors.json"
PLANTED_SHARE = 0.10
CONFUSABLE = (("fear", "surprise"), ("sadness", "neutral"), ("disgust", "anger"))
SWEEP = (0.0001, 0.001, 0.01, 0.1, 1.0)
SWEEP_SEEDS = (10, 11, 12)  # C is compared on seeds the main table does not use
TOP = (50, 100)
RANKINGS = {
    "oof_quality": "out of fold: label quality (the strategy)",
    "oof": "out of fold: cleanlab's flags first, then label quality",
    "lr_given": "in sample, logistic regression: p(given label)",
    "lr_margin": "in sample, logistic regression: margin",
    "head_given": "in sample, the studio's head: fused p(given label)",
    "head_margin": "in sample, the studio's head: fused margin",
    "random": "random",
}


def plant(truth, variant: str, seed: int):
    """(noisy labels, planted rows): PLANTED_SHARE of the faces get a wrong label."""
    import numpy as np

    from core.classes import class_names

    names = class_names()
    rng = np.random.default_rng(1000 + seed)
    count = round(PLANTED_SHARE * len(truth))
    noisy = truth.copy()
    if variant == "uniform":
        planted = rng.choice(len(truth), count, replace=False)
        noisy[planted] = (truth[planted] + rng.integers(1, len(names), count)) % len(names)
        return noisy, planted
    partner = np.full(len(names), -1)
    for a, b in CONFUSABLE:
        partner[names.index(a)], partner[names.index(b)] = names.index(b), names.index(a)
    pool = np.flatnonzero(partner[truth] >= 0)
    planted = rng.choice(pool, min(count, len(pool)), replace=False)
    noisy[planted] = partner[truth[planted]]
    return noisy, planted


def precision(order, planted_mask, k: int) -> float:
    return float(planted_mask[order[:k]].mean())


def margin_of(probs):
    import numpy as np

    top = np.sort(probs, axis=1)
    return top[:, -1] - top[:, -2]


def rank_ascending(values):
    import numpy as np

    return np.lexsort((np.arange(len(values)), values))


def measure(data: dict, rows, variant: str, seed: int) -> dict:
    """Every ranking's precision for one labeled set, one kind of planted error and one seed."""
    import numpy as np
    import torch

    from core.active.label_errors import check_labels, fit_classifier
    from core.training.head import build_head_trainer
    from core.training.inference import predict
    from core.training.loop import LoopConfig
    from core.training.settings import TrainSettings, auto_steps

    truth = data["labels"][rows]
    noisy, planted = plant(truth, variant, seed)
    mask = np.zeros(len(rows), dtype=bool)
    mask[planted] = True
    x0 = data["view0"][rows]
    timings, orders = {}, {}
    started = time.perf_counter()
    check = check_labels(x0, noisy, seed=seed)
    timings["oof_s"] = time.perf_counter() - started
    orders["oof_quality"] = check.order()
    orders["oof"] = np.lexsort((np.arange(len(rows)), check.quality, ~check.flagged))

    started = time.perf_counter()
    model = fit_classifier(x0, noisy, check.regularisation)
    probs = np.zeros_like(check.probs)
    probs[:, model.classes_] = model.predict_proba(x0)
    timings["lr_s"] = time.perf_counter() - started
    given = np.arange(len(rows))
    orders["lr_given"], orders["lr_margin"] = rank_ascending(probs[given, noisy]), rank_ascending(margin_of(probs))

    started = time.perf_counter()
    steps = auto_steps(len(rows), 0)
    settings = TrainSettings(algorithm="sitfer", loop=LoopConfig(steps=steps, unlabeled_ratio=0, seed=seed))
    trainer = build_head_trainer(data["views"][rows], noisy, data["class_text"], settings, torch.device("cpu"))
    trainer.run()
    fused = predict(
        trainer.ema.module,
        trainer.algorithm,
        torch.from_numpy(data["views"][rows, 0]),
        trainer.step,
        torch.arange(len(rows)),
    ).fused.astype(np.float64)
    timings["head_s"] = time.perf_counter() - started
    orders["head_given"], orders["head_margin"] = rank_ascending(fused[given, noisy]), rank_ascending(margin_of(fused))
    orders["random"] = np.random.default_rng(2000 + seed).permutation(len(rows))

    k = len(planted)
    return {
        "faces": len(rows),
        "planted": k,
        "variant": variant,
        "seed": seed,
        "regularisation": check.regularisation,
        "head_steps": steps,
        "head_in_sample_accuracy_noisy": float((fused.argmax(1) == noisy).mean()),
        "lr_in_sample_accuracy_noisy": float((probs.argmax(1) == noisy).mean()),
        "oof_accuracy_noisy": float((check.probs.argmax(1) == noisy).mean()),
        "flagged": int(check.flagged.sum()),
        "flagged_precision": float(mask[check.flagged].mean()) if check.flagged.any() else 0.0,
        "flagged_recall": float(check.flagged[planted].mean()),
        "precision": {
            name: {"at_k": precision(order, mask, k), **{f"at_{t}": precision(order, mask, t) for t in TOP}}
            for name, order in orders.items()
        },
        "seconds": {name: round(value, 2) for name, value in timings.items()},
    }


def sweep(data: dict, train_rows, per_class: int) -> dict:
    """Precision at k of the out-of-fold ranking at each fixed C and at the chosen one."""
    import numpy as np

    from bench.ssl_benchmark import labeled_subset
    from core.active.label_errors import check_labels

    found: dict[str, list[float]] = {}
    chosen = []
    for seed in SWEEP_SEEDS:
        drawn = labeled_subset(data["labels"][train_rows], data["ids"][train_rows], per_class, seed)
        rows = train_rows[drawn >= 0]
        noisy, planted = plant(data["labels"][rows], "uniform", seed)
        mask = np.zeros(len(rows), dtype=bool)
        mask[planted] = True
        for strength in (*SWEEP, None):
            check = check_labels(data["view0"][rows], noisy, seed=seed, regularisation=strength)
            found.setdefault("chosen" if strength is None else f"{strength:g}", []).append(
                precision(check.order(), mask, len(planted))
            )
            if strength is None:
                chosen.append(check.regularisation)
    return {"per_class": per_class, "seeds": list(SWEEP_SEEDS), "precision_at_k": found, "chosen": chosen}


def end_to_end(project_root: Path, run_id: int) -> dict:
    """build_queue's label_errors on a copy of the project (database copied, caches linked, so
    the original is left as it was), first with nothing cached, then again."""
    from core.active import build_queue
    from core.store.project import Project

    with tempfile.TemporaryDirectory(prefix="label-errors-bench-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        for name in ("project.json", "project.db"):
            shutil.copy2(project_root / name, root / name)
        for name in ("faces", "thumbnails", "checkpoints"):
            (root / name).symlink_to(project_root / name)
        (root / "features").mkdir()
        for entry in (project_root / "features").iterdir():
            (root / "features" / entry.name).symlink_to(entry)
        out: dict = {}
        with Project.open(root) as project:
            for label in ("cold", "warm"):
                started = time.perf_counter()
                items = build_queue(project, run_id, "label_errors", 50)
                out[f"{label}_s"] = round(time.perf_counter() - started, 2)
            from core.active.label_errors import suspected_label_errors

            with project.session() as session:
                found = suspected_label_errors(project, session, run_id)
        out.update(
            labeled=len(found.face_ids),
            flagged=int(found.check.flagged.sum()),
            regularisation=found.check.regularisation,
            oof_accuracy=float((found.check.probs.argmax(1) == found.check.labels).mean()),
            unchecked=len(found.unchecked),
            first_reasons=[f"face {item.face_id}: {item.reason}" for item in items[:3]],
        )
    return out


def load(project_root: Path, run_id: int | None) -> dict:
    import numpy as np

    from core.active.data import resolve_run
    from core.encoders import get_encoder
    from core.encoders.text import class_text_embeddings, load_descriptions
    from core.store.models import Run
    from core.store.project import Project
    from core.training.data import load_face_table
    from core.training.geometry import cached_head_inputs, load_head_inputs
    from core.training.settings import TrainSettings

    with Project.open(project_root, read_only=True) as project:
        with project.session() as session:
            run_id = resolve_run(session, run_id)
            run = session.get(Run, run_id)
            assert run is not None
            settings = TrainSettings.from_dict(run.config)
            faces = load_face_table(project, session)
        encoder = get_encoder(settings.encoder, device="cpu")
        train_rows = faces.where(split="train", labeled=True)
        started = time.perf_counter()
        inputs = load_head_inputs(project, encoder, faces, settings.strong_views, settings.uses_geometry, train_rows)
        read_s = time.perf_counter() - started
        strategy_view, cached = cached_head_inputs(
            project, encoder, faces, settings.strong_views, settings.uses_geometry, train_rows
        )
        descriptions = load_descriptions(project.resolve_path(settings.descriptions) if settings.descriptions else None)
        class_text = class_text_embeddings(encoder, descriptions, project.cache_dir("features"))
    keep = np.ones(len(train_rows), dtype=bool)
    keep[inputs.broken] = False
    return {
        "run_id": run_id,
        "settings": settings,
        "encoder": encoder.describe(),
        "views": inputs.features[keep],
        "view0": inputs.features[keep, 0],
        "labels": faces.labels[train_rows][keep],
        "ids": faces.ids[train_rows][keep],
        "class_text": class_text,
        "read_s": read_s,
        # The strategy reads view 0 through the no-compute path: the same numbers.
        "strategy_inputs_equal": bool(cached.all() and np.array_equal(strategy_view, inputs.features[:, 0])),
    }


def summary(runs: list[dict]) -> dict:
    """Mean and sd over seeds of every number in the runs of one condition."""

    def stats(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}

    out = {
        name: {at: stats([r["precision"][name][at] for r in runs]) for at in runs[0]["precision"][name]}
        for name in runs[0]["precision"]
    }
    for key in ("flagged", "flagged_precision", "flagged_recall", "oof_accuracy_noisy"):
        out[key] = stats([float(r[key]) for r in runs])
    return out


def run(args, save) -> dict:
    os.environ["FER_STUDIO_THREADS"] = str(args.threads)
    from core.threads import configure_threads

    plan = configure_threads("worker")  # before numpy's BLAS and torch start their pools
    import numpy as np
    import torch

    from bench.ssl_benchmark import labeled_subset

    started = time.perf_counter()
    results: dict = {
        "machine": machine_summary(),
        "note": args.note,
        "threads": plan.describe(),
        "torch_threads": torch.get_num_threads(),
        "project": str(args.project),
        "before": machine_state(),
        "conditions": {},
    }
    data = load(args.project, args.run)
    settings = data["settings"]
    results.update(
        run=data["run_id"],
        encoder=data["encoder"],
        geometry=settings.uses_geometry,
        inputs=int(data["view0"].shape[1]),
        train_labeled=len(data["labels"]),
        read_s=round(data["read_s"], 1),
        strategy_inputs_equal=data["strategy_inputs_equal"],
    )
    train_rows = np.arange(len(data["labels"]))
    for size in args.sizes:
        for variant in ("uniform", "confusable"):
            runs = []
            for seed in range(args.seeds):
                if size == "all":
                    rows = train_rows
                else:
                    drawn = labeled_subset(data["labels"], data["ids"], int(size), seed)
                    rows = train_rows[drawn >= 0]
                runs.append(measure(data, rows, variant, seed))
                print(f"{size} {variant} seed {seed}: {runs[-1]['precision']['oof']} {runs[-1]['seconds']}", flush=True)
                results["conditions"][f"{size}/{variant}"] = {"runs": runs, "summary": summary(runs)}
                save and save(results)
    results["sweep"] = sweep(data, train_rows, args.sweep_per_class)
    save and save(results)
    results["end_to_end"] = end_to_end(args.project, data["run_id"])
    results["after"] = machine_state()
    results["total_s"] = round(time.perf_counter() - started, 1)
    return results


def _cell(stat: dict) -> str:
    return f"{100 * stat['mean']:.1f} ± {100 * stat['sd']:.1f}"


def _reading(results: dict, seconds: dict, head_fit: dict) -> list[str]:
    """The table's findings in words, from the numbers."""
    lines = []
    for key, condition in results["conditions"].items():
        stats = condition["summary"]
        oof, lr, head, margin = (stats[n]["at_k"] for n in ("oof_quality", "lr_given", "head_given", "head_margin"))
        gap = 100 * (oof["mean"] - max(head["mean"], margin["mean"]))
        close = abs(oof["mean"] - lr["mean"]) <= max(oof["sd"], lr["sd"], 0.01)
        lines.append(
            f"- {key}: out of fold finds {_cell(oof)}% of the planted labels in its first k, "
            f"{gap:+.1f} points against the studio's head in sample (p(given) {_cell(head)}, margin {_cell(margin)}"
            + ("; within the seeds' spread" if abs(gap) <= 100 * max(oof["sd"], head["sd"], margin["sd"]) else "")
            + "); "
            + (
                f"the same logistic regression in sample is as good ({_cell(lr)})"
                if close
                else f"the same logistic regression in sample gives {_cell(lr)}"
            )
            + (
                "; the head learns its training labels by heart, wrong ones included"
                if head_fit[key] >= 0.95
                else f"; the head fits only {100 * head_fit[key]:.0f}% of its own labels, so its probability of "
                "the given label is a check too"
            )
            + "."
        )
    conditions = results["conditions"].items()
    flag_gap = [
        100 * (c["summary"]["oof_quality"]["at_k"]["mean"] - c["summary"]["oof"]["at_k"]["mean"]) for _, c in conditions
    ]
    margins = [100 * c["summary"]["head_margin"]["at_k"]["mean"] for _, c in conditions]
    lines.append(
        f"- The model's margin, which ignores the given label, finds {min(margins):.0f}-{max(margins):.0f}% "
        "(random: 10%): a wrong label on a face the model is sure of has a wide margin. Ranking cleanlab's "
        f"flagged labels first changes precision at k by {', '.join(f'{-g:+.1f}' for g in flag_gap)} points "
        "against label quality alone, so the queue ranks by quality and says the flag in each reason."
    )
    lines.append(
        f"- Out-of-fold time per check: {', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())}. The studio's "
        f"head fits its noisy labels in sample to {', '.join(f'{k} {100 * v:.0f}%' for k, v in head_fit.items())} "
        "accuracy. Confusable flips are the hard case for every ranking: a face between fear and surprise "
        "labeled with the other one is what the features themselves find ambiguous."
    )
    return lines


def render(results: dict) -> str:
    conditions = results["conditions"]
    table = [
        "| labeled set | planted | ranking | P@k (= R@k) | P@50 | P@100 |",
        "|---|---|---|---|---|---|",
    ]
    flags = [
        "| labeled set | planted | flagged | precision | recall | out-of-fold accuracy on the noisy labels | C chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, condition in conditions.items():
        size, variant = key.split("/")
        runs, stats = condition["runs"], condition["summary"]
        labeled = f"{runs[0]['faces']:,} ({'all' if size == 'all' else size + ' per class'})"
        planted = f"{runs[0]['planted']:,} {variant}"
        for name, title in RANKINGS.items():
            s = stats[name]
            bold = "**" if name == "oof_quality" else ""
            table.append(
                f"| {labeled} | {planted} | {bold}{title}{bold} | {bold}{_cell(s['at_k'])}{bold} | "
                f"{_cell(s['at_50'])} | {_cell(s['at_100'])} |"
            )
        chosen = ", ".join(f"{r['regularisation']:g}" for r in runs)
        flags.append(
            f"| {labeled} | {planted} | {stats['flagged']['mean']:,.0f} | {_cell(stats['flagged_precision'])} | "
            f"{_cell(stats['flagged_recall'])} | {_cell(stats['oof_accuracy_noisy'])} | {chosen} |"
        )
    sweep = results["sweep"]
    sweep_row = " | ".join(
        f"{name}: {100 * statistics.fmean(values):.1f}" for name, values in sweep["precision_at_k"].items()
    )
    e2e = results["end_to_end"]
    seconds = {key: statistics.fmean(r["seconds"]["oof_s"] for r in c["runs"]) for key, c in conditions.items()}
    heads = {key: c["runs"][0]["head_steps"] for key, c in conditions.items()}
    head_fit = {
        key: statistics.fmean(r["head_in_sample_accuracy_noisy"] for r in c["runs"]) for key, c in conditions.items()
    }
    before, after = results["before"], results["after"]
    reasons = "\n".join(f"  - {reason}" for reason in e2e["first_reasons"])
    return "\n".join(
        [
            "## Suspected label errors: the label_errors queue on planted wrong labels",
            "",
            f"`python -m bench.label_errors`: the labeled train faces of `{results['project']}` (FER2013 train, "
            f"{results['train_labeled']:,} faces, every one labeled; run {results['run']}, geometry "
            f"{'on' if results['geometry'] else 'off'}: {results['inputs']:,} numbers a face). N per class drawn "
            f"with the seed, or all; {100 * PLANTED_SHARE:.0f}% of them given a planted wrong label: **uniform** "
            "(another class at random) or **confusable** (the partner in fear/surprise, sadness/neutral, "
            "disgust/anger, among faces of those classes). FER2013's own labels are noisy too: the planted "
            "labels are this table's truth, so a real FER2013 error ranked first counts against precision. "
            "Percentages, mean ± sd over 3 seeds; k = the number planted (precision at k equals recall at k); "
            "random's expected precision is 10%. Rankings: out of fold = `core.active.label_errors.check_labels` "
            "(5 stratified folds of a multinomial logistic regression on standardized features, C chosen on the "
            "first fold by log loss, cleanlab 2.9's `find_label_issues` and self-confidence), what the queue "
            "ranks by; in sample = a model fitted on all the noisy labels, ranked by its probability of the "
            "given label or by its margin: the same logistic regression, and the studio's sitfer head on the "
            f"labeled faces (steps auto: {', '.join(f'{k} {v}' for k, v in heads.items())}; every view; each face "
            f"predicted leaving its own bank slot out, as a run writes its predictions). Threads: "
            f"{results['threads']}; torch {results['torch_threads']}. Machine: {results['machine']}. Load (1/5/15 "
            f"min) {before['load_1_5_15']} before, {after['load_1_5_15']} after; busy beside it: "
            f"{'; '.join(before['busy']) or 'nothing'} (before), {'; '.join(after['busy']) or 'nothing'} (after). "
            f"{results['note']} The whole run took {results['total_s'] / 60:.0f} min."
            + (
                f" Rerun afterwards: {results['rerun']['what']} (load {results['rerun']['before']['load_1_5_15']} "
                f"before, busy: {'; '.join(results['rerun']['before']['busy']) or 'nothing'})."
                if results.get("rerun")
                else ""
            ),
            "",
            *table,
            "",
            "cleanlab's flagged set as it is (each reason says whether a label is in it), and the C the first "
            "fold chose:",
            "",
            *flags,
            "",
            f"C on the first fold against fixed C (precision at k, out of fold, {sweep['per_class']} per class, "
            f"uniform, seeds {', '.join(map(str, sweep['seeds']))}): {sweep_row}; chosen "
            f"{', '.join(f'{c:g}' for c in sweep['chosen'])}.",
            "",
            f"The strategy end to end (`build_queue(project, {results['run']}, 'label_errors', 50)`, split train, "
            f"a copy of the project's database with its caches linked): {e2e['cold_s']:.0f} s with nothing "
            f"cached (the encoder loaded to name its cache, {e2e['labeled']:,} faces' cached inputs read, "
            f"5 folds plus the first fold's C grid), {e2e['warm_s']:.1f} s opened again. On FER2013's own labels "
            f"cleanlab flags {e2e['flagged']:,} of {e2e['labeled']:,} ({100 * e2e['flagged'] / e2e['labeled']:.0f}%; "
            f"out-of-fold accuracy {100 * e2e['oof_accuracy']:.1f}%, C {e2e['regularisation']:g}); its first faces:",
            reasons,
            "",
            "**Reading.**",
            *_reading(results, seconds, head_fit),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT)
    parser.add_argument("--run", type=int, help="run id (default: the newest finished run)")
    parser.add_argument(
        "--sizes", type=lambda text: text.split(","), default=["100", "all"], help="per class, or all (default 100,all)"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep-per-class", type=int, default=100)
    add_report_arguments(parser, JSON_RESULTS)
    args = parser.parse_args(argv)
    return publish(SECTION, render(saved_or_run(args, run)), args)


if __name__ == "__main__":
    raise SystemExit(main())
