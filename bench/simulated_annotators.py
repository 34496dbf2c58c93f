"""Simulated annotators on FER2013: how much they agree, and training on their majority labels
against their vote shares (`train --soft-labels`).

Protocol: FER2013's own label is the hidden truth. For each seed, N train faces per class are
drawn (bench.ssl_benchmark's draw); 5 simulated annotators each vote on every drawn face, from
their own confusion matrix's row for the true class: mostly right (0.75-0.85 on the diagonal,
varying per annotator and a little per class), most of the error mass on the confusable partner
(fear <-> surprise, sadness <-> neutral, disgust <-> anger), the rest spread evenly (happiness,
which has no partner, spreads all of its errors). The 3-annotator case is the first 3 of them.
The votes are written into a copy of the project through `core.labeling.bulk_label` under each
annotator's name, in a random order per face, so the studio's consensus (majority, a tie to the
newest vote) breaks ties at random; the labels and vote shares the runs train on are read back
from that store (`core.training.soft_labels.vote_targets`, what a run freezes at its start).

Reported: Krippendorff's alpha (nominal) and Fleiss' kappa of the stored votes, from the studio's
own agreement report (core.team.agreement, what `main.py agreement` shows), per class too, how often the majority
label is the truth; and head-mode training (the worker's own `prepare_head_from_features`, on
the cached features with the face geometry, as `main.py train` runs) on the same faces with
(a) the majority labels, (b) the vote shares, (c) the true labels, the rest of train unlabeled,
same algorithm, steps and seed: FER2013 val (PublicTest) accuracy of the EMA model at the last
step (nothing is selected on val).

    python -m bench.simulated_annotators                  # writes docs/results/simulated_annotators.json and docs/benchmarks.md
    python -m bench.simulated_annotators --render docs/results/simulated_annotators.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from bench.report import REPO, machine_summary, publish, saved_or_run
from bench.ssl_benchmark import labeled_subset
from core.classes import class_names
from core.labeling import bulk_label
from core.store.models import Label
from core.store.project import Project
from core.team.agreement import compute_agreement
from core.team.votes import load_votes
from core.training.data import FaceTable, load_face_table
from core.training.events import NullEvents
from core.training.inference import predict
from core.training.loop import LoopConfig
from core.training.metrics import classification_report
from core.training.settings import TrainSettings
from core.training.soft_labels import vote_targets
from core.training.worker import choose_device, prepare_head_from_features

SECTION = "simulated-annotators"
RESULTS = REPO / "docs" / "results" / "simulated_annotators.json"
SOURCE = Path(os.environ.get("FER_PREDICT_PROJECT", "/tmp/fer-predict"))  # FER2013 train + val, all labels imported
WORK = Path(os.environ.get("FER_SOFT_BENCH", "/tmp/fer-soft-bench"))
NAMES = class_names()
PARTNER = {
    "fear": "surprise",
    "surprise": "fear",
    "sadness": "neutral",
    "neutral": "sadness",
    "disgust": "anger",
    "anger": "disgust",
}
DIAGONAL = (0.75, 0.85)  # each annotator's accuracy is drawn from this range
CLASS_JITTER = 0.03  # and varies this much from class to class
PAIR_SHARE = 0.85  # of a class's errors, the share that goes to its confusable partner
ANNOTATOR_SEED = 2026  # the annotators' matrices: the same for every seed (the seed draws faces and votes)
MAX_ANNOTATORS = 5


# -- the annotators ------------------------------------------------------------------------------
def confusion_matrices(count: int, seed: int = ANNOTATOR_SEED) -> np.ndarray:
    """(count, C, C): row t of annotator k is how k labels a face whose true class is t."""
    rng = np.random.default_rng(seed)
    c = len(NAMES)
    matrices = np.zeros((count, c, c))
    for k in range(count):
        accuracy = rng.uniform(*DIAGONAL)
        for t, name in enumerate(NAMES):
            right = float(np.clip(accuracy + rng.normal(0, CLASS_JITTER), DIAGONAL[0] - 0.05, DIAGONAL[1] + 0.05))
            row = np.zeros(c)
            others = [j for j in range(c) if j != t]
            partner = PARTNER.get(name)
            if partner is None:
                row[others] = (1 - right) / len(others)
            else:
                p = NAMES.index(partner)
                rest = [j for j in others if j != p]
                row[p] = (1 - right) * PAIR_SHARE
                row[rest] = (1 - right) * (1 - PAIR_SHARE) / len(rest)
            row[t] = right
            matrices[k, t] = row
    return matrices


def draw_votes(truth: np.ndarray, matrices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(annotators, faces) class indices, each drawn from the annotator's row for the true class."""
    votes = np.zeros((len(matrices), len(truth)), dtype=np.int64)
    for k, matrix in enumerate(matrices):
        cumulative = matrix[truth].cumsum(axis=1)
        votes[k] = (rng.random((len(truth), 1)) > cumulative).sum(axis=1)
    return np.minimum(votes, len(NAMES) - 1)  # a rounding error past the last column


# -- agreement -----------------------------------------------------------------------------------------
def agreement(votes: list, consensus: dict[int, str]) -> dict:
    """The studio's own agreement report (core.team.agreement) of the stored votes, in brief."""
    report = compute_agreement(votes, consensus)
    return {
        "krippendorff_alpha": report.krippendorff_alpha,
        "fleiss_kappa": report.fleiss_kappa,
        "class_kappa": {c.name: c.fleiss_kappa for c in report.per_class},
        "confused_pairs": [{"classes": list(p.classes), "share": p.share} for p in report.confused_pairs[:4]],
    }


# -- the projects ---------------------------------------------------------------------------------------
def _copy_database(source: Path, dest: Path) -> None:
    """A consistent copy of a SQLite project database (its WAL included), never writing `source`."""
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    writer = sqlite3.connect(dest)
    try:
        reader.backup(writer)
    finally:
        writer.close()
        reader.close()


def template_project(source: Path, work: Path) -> Path:
    """The benchmark's own copy of `source` (database and feature cache), opened once so its schema
    is this studio's; `source` is only read."""
    root = work / "template"
    if Project.is_project(root) and (root / "features").is_dir():
        return root
    if not (source / "project.db").is_file():
        raise SystemExit(f"skipped: no FER2013 project at {source} (set FER_PREDICT_PROJECT)")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copy2(source / "project.json", root / "project.json")
    _copy_database(source / "project.db", root / "project.db")
    shutil.copytree(source / "features", root / "features")
    Project.open(root).close()  # migrates the copy
    return root


def scenario_project(template: Path, dest: Path) -> Project:
    """A fresh copy of the template's database (no feature cache: the runs read the template's)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(template / "project.json", dest / "project.json")
    _copy_database(template / "project.db", dest / "project.db")
    return Project.open(dest)


def write_votes(project: Project, face_ids: np.ndarray, votes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each annotator's votes through the labeling API, in a random order per face (round r: the
    r-th annotator of each face's order); returns that order (faces, annotators)."""
    order = np.argsort(rng.random((len(face_ids), len(votes))), axis=1)
    for r in range(len(votes)):
        for k in range(len(votes)):
            faces = order[:, r] == k
            for c, name in enumerate(NAMES):
                chosen = face_ids[faces & (votes[k] == c)]
                if len(chosen):
                    bulk_label(project, [int(f) for f in chosen], name, f"annotator-{k + 1}", include_labeled=True)
    return order


def expected_consensus(votes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The majority per face, a tie to the newest vote among the tied labels (the studio's rule)."""
    result = np.zeros(votes.shape[1], dtype=np.int64)
    for i in range(votes.shape[1]):
        counts = np.bincount(votes[:, i], minlength=len(NAMES))
        tied = set(np.flatnonzero(counts == counts.max()).tolist())
        result[i] = next(votes[k, i] for k in order[i][::-1] if votes[k, i] in tied)
    return result


@dataclass
class Labeled:
    """What a scenario's runs train on, for the drawn faces: the consensus and the vote shares."""

    labels: np.ndarray
    targets: np.ndarray
    agreement: dict
    majority_correct: float
    split_share: float  # faces whose votes are not unanimous
    tie_share: float


def annotate(template: Path, face_ids: np.ndarray, truth: np.ndarray, votes: np.ndarray, seed: int) -> Labeled:
    project = scenario_project(template, WORK / f"votes-{seed}-{len(votes)}")
    try:
        order = write_votes(project, face_ids, votes, np.random.default_rng(seed + 1000 * len(votes)))
        index = {name: i for i, name in enumerate(NAMES)}
        with project.session() as session:
            rows = dict(
                session.execute(
                    select(Label.image_id, Label.label).where(Label.image_id.in_([int(f) for f in face_ids]))
                ).all()
            )
            labels = np.array([index[rows[int(f)]] for f in face_ids], dtype=np.int64)
            stored = load_votes(session, [int(f) for f in face_ids])
            found = vote_targets(session, face_ids, labels)
        position = {int(f): i for i, f in enumerate(face_ids)}
        read_back = np.full(votes.shape, -1)
        for vote in stored:
            read_back[int(vote.annotator.rsplit("-", 1)[1]) - 1, position[vote.face_id]] = index[vote.label or ""]
        if not np.array_equal(read_back, votes):
            raise SystemExit("the votes read back from the store are not the ones written")
        if not np.array_equal(labels, expected_consensus(votes, order)):
            raise SystemExit("the store's consensus is not the majority with ties to the newest vote")
        counts = np.stack([np.bincount(votes[:, i], minlength=len(NAMES)) for i in range(votes.shape[1])])
        tops = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1)
        return Labeled(
            labels,
            found.targets,
            agreement(stored, {int(f): NAMES[c] for f, c in zip(face_ids, labels)}),
            float((labels == truth).mean()),
            float(found.split.mean()),
            float((tops > 1).mean()),
        )
    finally:
        project.close()
        shutil.rmtree(WORK / f"votes-{seed}-{len(votes)}", ignore_errors=True)


# -- training ------------------------------------------------------------------------------------------------
@dataclass
class Data:
    faces: FaceTable
    features: np.ndarray
    broken: list[int]
    class_text: torch.Tensor
    truth: np.ndarray  # per face row (FER2013's labels)
    train_rows: np.ndarray
    val_rows: np.ndarray
    encoder: str
    without_mesh: int | None


def load_data(template: Path) -> Data:
    from core.encoders import get_encoder
    from core.encoders.text import class_text_embeddings, load_descriptions
    from core.training.geometry import load_head_inputs

    settings = TrainSettings()
    with Project.open(template) as project:
        with project.session() as session:
            faces = load_face_table(project, session)
        encoder = get_encoder(settings.encoder)
        inputs = load_head_inputs(project, encoder, faces, settings.strong_views, settings.uses_geometry)
        class_text = class_text_embeddings(encoder, load_descriptions(), project.cache_dir("features"))
    usable = np.ones(len(faces), dtype=bool)
    usable[inputs.broken] = False
    return Data(
        faces,
        inputs.features,
        inputs.broken,
        class_text,
        faces.labels.copy(),
        np.flatnonzero((faces.splits == "train") & usable & (faces.labels >= 0)),
        np.flatnonzero((faces.splits == "val") & usable & (faces.labels >= 0)),
        encoder.describe(),
        inputs.without_mesh,
    )


def train_once(data: Data, algorithm: str, seed: int, steps: int, labels, targets) -> dict:
    """One head-mode run as the worker makes it: `labels` per face row (-1: unlabeled), `targets`
    per face row or None (hard labels)."""
    settings = TrainSettings(algorithm=algorithm, loop=LoopConfig(steps=steps, seed=seed))
    device = choose_device(None)
    started = time.perf_counter()
    prepared = prepare_head_from_features(
        data.faces,
        data.features,
        data.broken,
        labels,
        data.class_text,
        settings,
        device,
        [],
        None,
        NullEvents(),
        targets,
    )
    trainer = prepared.trainer
    trainer.run()
    seconds = time.perf_counter() - started
    val = predict(
        trainer.ema.module, trainer.algorithm, torch.from_numpy(data.features[data.val_rows, 0]), trainer.step
    )
    truth = data.truth[data.val_rows]
    return {
        "fused": classification_report(truth, val.fused.argmax(1)),
        "classifier": classification_report(truth, val.semantic.argmax(1)),
        "seconds": round(seconds, 1),
    }


def run_benchmark(args, save=None) -> dict:
    torch.set_num_threads(args.threads)
    template = template_project(args.source, WORK)
    data = load_data(template)
    matrices = confusion_matrices(MAX_ANNOTATORS)
    results: dict = {
        "settings": {
            "per_class": args.per_class,
            "seeds": args.seeds,
            "annotators": args.annotators,
            "algorithms": args.algorithms,
            "steps": args.steps,
            "threads": args.threads,
            "machine": machine_summary(),
            "torch": torch.__version__,
            "encoder": data.encoder,
            "train_faces": len(data.train_rows),
            "val_faces": len(data.val_rows),
            "faces_without_mesh": data.without_mesh,
            "loop": LoopConfig(steps=args.steps).to_dict(),
            "confusion_matrices": matrices.round(4).tolist(),
            "pair_share": PAIR_SHARE,
            "diagonal": DIAGONAL,
            "load_average_start": round(os.getloadavg()[0], 2),
            "note": args.note,
        },
        "labeled_sets": [],
        "runs": [],
    }
    started = time.perf_counter()
    train = data.train_rows
    for seed in args.seeds:
        drawn = labeled_subset(data.truth[train], data.faces.ids[train], args.per_class, seed)
        rows = train[drawn >= 0]
        truth = data.truth[rows]
        votes = draw_votes(truth, matrices, np.random.default_rng(seed))
        variants: list[tuple[str, int | None, np.ndarray, np.ndarray | None]] = [("truth", None, truth, None)]
        for count in args.annotators:
            labeled = annotate(template, data.faces.ids[rows], truth, votes[:count], seed)
            results["labeled_sets"].append(
                {
                    "seed": seed,
                    "annotators": count,
                    **labeled.agreement,
                    "majority_correct": labeled.majority_correct,
                    "split_share": labeled.split_share,
                    "tie_share": labeled.tie_share,
                    "majority_recall": classification_report(truth, labeled.labels)["per_class"],
                }
            )
            variants += [("majority", count, labeled.labels, None), ("soft", count, labeled.labels, labeled.targets)]
            print(
                f"seed {seed}, {count} annotators: alpha {labeled.agreement['krippendorff_alpha']:.3f}, "
                f"kappa {labeled.agreement['fleiss_kappa']:.3f}, majority right {labeled.majority_correct:.3f}",
                flush=True,
            )
        for algorithm in args.algorithms:
            for kind, count, labels, targets in variants:
                per_face = np.full(len(data.faces), -1, dtype=np.int64)
                per_face[rows] = labels
                soft = None
                if targets is not None:
                    soft = np.zeros((len(data.faces), len(NAMES)), dtype=np.float32)
                    soft[rows] = targets
                result = train_once(data, algorithm, seed, args.steps, per_face, soft)
                results["runs"].append(
                    {"seed": seed, "algorithm": algorithm, "labels": kind, "annotators": count, **result}
                )
                print(
                    f"seed {seed} {algorithm} {kind} {count or ''}: val fused {result['fused']['accuracy']:.4f} "
                    f"({result['seconds']:.0f} s)",
                    flush=True,
                )
                if save:
                    save(results)
    results["settings"]["total_seconds"] = round(time.perf_counter() - started, 1)
    results["settings"]["load_average_end"] = round(os.getloadavg()[0], 2)
    return results


# -- the report ---------------------------------------------------------------------------------------------
def _pct(values: list[float]) -> str:
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _number(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _variant_name(kind: str, count: int | None) -> str:
    return {
        "truth": "true labels (upper bound)",
        "majority": f"majority of {count}",
        "soft": f"vote shares of {count}",
    }[kind]


def render(results: dict) -> str:
    s = results["settings"]
    sets, runs = results["labeled_sets"], results["runs"]
    seeds = s["seeds"]
    diag = np.array(s["confusion_matrices"])
    accuracy = [float(np.mean(np.diag(m))) for m in diag]
    lines = [
        "## Simulated annotators on FER2013: agreement, majority labels against soft labels",
        "",
        f"`python -m bench.simulated_annotators` - FER2013's label is the hidden truth. Each seed ({', '.join(map(str, seeds))}) "
        f"draws {s['per_class']} train faces per class ({7 * s['per_class']:,} in all; the seed also draws the votes and "
        f"trains); {MAX_ANNOTATORS} simulated annotators vote on each, from their own confusion matrix's row for the true "
        f"class: mean diagonal {', '.join(f'{a:.2f}' for a in accuracy)} (drawn from {s['diagonal'][0]}-{s['diagonal'][1]} "
        f"per annotator, ±{CLASS_JITTER} per class), {s['pair_share']:.0%} of each class's errors on its confusable partner "
        "(fear/surprise, sadness/neutral, disgust/anger), the rest spread evenly (happiness spreads all of its). "
        "The 3-annotator rows are the first 3 of them. Votes are written through `core.labeling.bulk_label` under each "
        "annotator's name, in a random order per face, so the studio's consensus (majority, a tie to the newest vote) "
        "breaks ties at random; labels and vote shares are read back from the store with "
        "`core.training.soft_labels.vote_targets`, what `train --soft-labels` freezes at a run's start.",
        "",
        f"Training: the worker's head-mode path (`prepare_head_from_features`: cached offline features with the face "
        f"geometry, {s['train_faces']:,} train faces of which the drawn ones are labeled and the rest unlabeled), "
        f"{s['steps']:,} steps per run (fewer than the 2,000 of `train`'s auto steps, to keep the whole benchmark near "
        f"20 minutes on one idle core), batch 64 + 192 unlabeled, every other setting the default; the same faces, seed "
        f"and steps for every arm. Val: FER2013 PublicTest ({s['val_faces']:,} faces), the EMA model at the last step "
        "(nothing is selected on val). FER2013's PrivateTest is not in `../shared/data`, so there is no test column. "
        f"Encoder: {s['encoder']}. Machine: {s['machine']}; torch {s['torch']}; {s['threads']} thread; whole run "
        f"{s.get('total_seconds', 0) / 60:.0f} min, load average {s.get('load_average_start', '?')} at the start and "
        f"{s.get('load_average_end', '?')} at the end" + (f" ({s['note']})" if s.get("note") else "") + ": the seconds "
        "are upper bounds; accuracies do not depend on them.",
        "",
        "### Agreement of the simulated votes",
        "",
        *([f"({s['agreement_note']}.)", ""] if s.get("agreement_note") else []),
        "Mean ± sd over seeds. Split: faces whose votes are not unanimous (their soft target is not one-hot); tie: "
        "faces whose top count is shared (the consensus is then a coin toss between the tied labels).",
        "",
        "| annotators | Krippendorff's alpha (nominal) | Fleiss' kappa | majority label = truth, % | split, % | tie, % |",
        "|---|---|---|---|---|---|",
    ]
    for count in s["annotators"]:
        rows = [r for r in sets if r["annotators"] == count]
        lines.append(
            f"| {count} | {_number([r['krippendorff_alpha'] for r in rows])} | {_number([r['fleiss_kappa'] for r in rows])} "
            f"| {_pct([r['majority_correct'] for r in rows])} | {_pct([r['split_share'] for r in rows])} "
            f"| {_pct([r['tie_share'] for r in rows])} |"
        )
    lines += [
        "",
        "Per class (mean over seeds): Fleiss' kappa of the class against the rest, and the majority label's recall "
        "of the truth, %:",
        "",
        "| annotators | " + " | ".join(NAMES) + " |",
        "|---|" + "---|" * len(NAMES),
    ]
    for count in s["annotators"]:
        rows = [r for r in sets if r["annotators"] == count]
        lines.append(
            f"| {count}: kappa | "
            + " | ".join(f"{statistics.mean(r['class_kappa'][n] for r in rows):.2f}" for n in NAMES)
            + " |"
        )
        lines.append(
            f"| {count}: majority recall | "
            + " | ".join(f"{100 * statistics.mean(r['majority_recall'][n] for r in rows):.1f}" for n in NAMES)
            + " |"
        )
    pairs = [p for r in sets if r["annotators"] == max(s["annotators"]) for p in r["confused_pairs"]]
    if pairs:
        shares: dict[str, list[float]] = {}
        for pair in pairs:
            shares.setdefault("/".join(pair["classes"]), []).append(pair["share"])
        top = sorted(shares.items(), key=lambda item: -statistics.mean(item[1]))[:4]
        lines += [
            "",
            f"The pairs the votes confuse most ({max(s['annotators'])} annotators; share of the differing vote pairs, "
            "mean over seeds): " + ", ".join(f"{name} {100 * statistics.mean(v):.0f}%" for name, v in top) + ".",
        ]
    variants = [("truth", None)] + [(kind, c) for c in s["annotators"] for kind in ("majority", "soft")]
    for algorithm in s["algorithms"]:
        lines += [
            "",
            f"### Training on the votes: {algorithm}",
            "",
            "Val accuracy in %, mean ± sd over seeds; `fused` is the method's fused prediction (supervised's is its "
            "classifier).",
            "",
            "| labels | fused acc | fused bal. acc | classifier acc | train s |",
            "|---|---|---|---|---|",
        ]
        for kind, count in variants:
            rows = [r for r in runs if r["algorithm"] == algorithm and r["labels"] == kind and r["annotators"] == count]
            if not rows:
                continue
            lines.append(
                f"| {_variant_name(kind, count)} | {_pct([r['fused']['accuracy'] for r in rows])} "
                f"| {_pct([r['fused']['balanced_accuracy'] for r in rows])} "
                f"| {_pct([r['classifier']['accuracy'] for r in rows])} "
                f"| {statistics.median(r['seconds'] for r in rows):.0f} |"
            )
    lines += [
        "",
        "### Vote shares minus majority labels, paired by seed",
        "",
        "Fused val accuracy in points, same faces, votes and training seed: mean ± sd, and the seeds where the vote "
        "shares did better; the gap to the true labels beside it.",
        "",
        "| algorithm | annotators | soft - majority | seeds soft ahead | true - majority | true - soft |",
        "|---|---|---|---|---|---|",
    ]
    gains: list[float] = []
    for algorithm in s["algorithms"]:
        for count in s["annotators"]:
            triples = []
            for seed in seeds:
                found = [
                    _fused(runs, algorithm, kind, n, seed)
                    for kind, n in (("soft", count), ("majority", count), ("truth", None))
                ]
                if all(v is not None for v in found):
                    triples.append(tuple(float(v) for v in found if v is not None))
            if not triples:
                continue
            soft_gain = [a - b for a, b, _ in triples]
            lines.append(
                f"| {algorithm} | {count} | {_signed(soft_gain)} | {sum(g > 0 for g in soft_gain)} of {len(triples)} "
                f"| {_signed([t - b for _, b, t in triples])} | {_signed([t - a for a, _, t in triples])} |"
            )
            gains += soft_gain
    if gains:
        ahead = sum(g > 0 for g in gains)
        lines += [
            "",
            f"In all, the vote shares were {'ahead of' if statistics.mean(gains) > 0 else 'behind'} the majority labels by "
            f"{abs(statistics.mean(gains)):.1f} points on average, ahead in {ahead} of {len(gains)} pairs.",
        ]
    return "\n".join(lines)


def _fused(runs: list[dict], algorithm: str, kind: str, count: int | None, seed: int) -> float | None:
    """A run's fused val accuracy in %, None where it was not run."""
    for r in runs:
        if (r["algorithm"], r["labels"], r["annotators"], r["seed"]) == (algorithm, kind, count, seed):
            return 100 * r["fused"]["accuracy"]
    return None


def _signed(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.1f}"
    return f"{statistics.mean(values):+.1f} ± {statistics.stdev(values):.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SOURCE, help="the FER2013 project to copy (only read)")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2])
    parser.add_argument("--annotators", type=lambda t: [int(v) for v in t.split(",")], default=[3, 5])
    parser.add_argument("--algorithms", type=lambda t: t.split(","), default=["sitfer", "supervised"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="", help="what else ran on the machine, for the report")
    parser.add_argument("--json-out", type=Path, default=RESULTS, help="results JSON, rewritten after every run")
    parser.add_argument("--render", type=Path, help="render saved results into docs/benchmarks.md and exit")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if any(not 2 <= count <= MAX_ANNOTATORS for count in args.annotators):
        parser.error(f"--annotators: between 2 and {MAX_ANNOTATORS} each")
    results = saved_or_run(args, run_benchmark)
    return publish(SECTION, render(results), args)


if __name__ == "__main__":
    sys.exit(main())
