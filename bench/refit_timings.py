"""Live refit (core/training/refit.py): how long a refit takes, warm and cold, and how much of a
full run's accuracy it recovers.

The demo (910 faces: `main.py demo`) gets a first run with the default settings. Then, round
after round, a simulated annotator labels the top K faces of the newest run's review queue
(margin) with their withheld truth, and the run is refitted:
- warm: `refit()` in this process with one RefitMemory kept across rounds (what the warm worker
  does); the first refit, which loads the encoder and the features, is reported apart;
- cold: `main.py refit PROJECT --events json` as a fresh process, on a copy of the project;
- accuracy: the refit chain against a full run from scratch with the same settings on the same
  labels, fused val accuracy.
--parts schedules: how the refit's schedule was chosen: one round of corrections, refits of the
first run with other step counts, learning rates and teacher windows, against a full run.
--parts fer2013: the same on FER2013 itself: a studio copy of bench.fer_project's project (its real
feature cache; build it first), 100 labeled per class, a first run, refits after corrections from
its queue.
--parts fer-scale: the timings on a project the size of FER2013 train + val (27,485 + 3,589
faces, 100 labeled per class) whose cached features are synthetic (class-clustered noise of the
offline encoder's shape): the refit's cost at that size, not its accuracy.

Machine load is recorded with every measurement: other engineers' jobs share the cores.

    python -m bench.refit_timings [--parts demo,schedules,fer-scale,fer2013] [--rounds 3] [--every 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import REPO, machine_summary, saved_or_run, write_section

SECTION = "refit-timings"
FER_TRAIN, FER_VAL, FER_LABELED_PER_CLASS = 27_485, 3_589, 100


def load_note() -> str:
    """The load average and the other busy processes, as the measurement starts."""
    one, five, _ = os.getloadavg()
    ps = subprocess.run(["ps", "-eo", "pcpu,pid,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    mine = os.getpid()
    busy = []
    for line in ps.splitlines()[1:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and float(parts[0]) >= 20 and int(parts[1]) != mine:
            busy.append(" ".join(parts[2].split()[:4])[:60])
    return f"load {one:.1f}/{five:.1f}" + (f"; busy: {'; '.join(busy[:4])}" if busy else "")


# -- the simulated annotator -------------------------------------------------------------------
def correct_from_queue(root: Path, k: int) -> int:
    """Label the newest run's top-k margin queue faces with their withheld truth; the labeled count."""
    from sqlalchemy import select

    from core.active.queue import build_queue
    from core.labeling import set_label
    from core.store.models import HiddenTruth, Image, Label
    from core.store.project import Project

    with Project.open(root) as project:
        items = build_queue(project, None, "margin", limit=k)
        with project.session() as session:
            truth = dict(session.execute(select(HiddenTruth.image_id, HiddenTruth.label)).all())
        for item in items:
            set_label(project, item.face_id, truth[item.face_id], "bench")
        with project.session() as session:
            return len(
                session.scalars(
                    select(Label.image_id).join(Image, Image.id == Label.image_id).where(Image.split == "train")
                ).all()
            )


def train_parent(root: Path, steps: int | None = None, projection: str = "umap") -> dict:
    from core.store.project import Project
    from core.training.events import JsonEvents
    from core.training.settings import TrainSettings
    from core.training.worker import train

    settings = TrainSettings(projection=projection)
    settings.loop.steps = steps
    started = time.perf_counter()
    with Project.open(root) as project:
        outcome = train(project, settings, JsonEvents(io.StringIO()))
    assert outcome.status == "finished", outcome
    return {"run": outcome.run_id, "seconds": time.perf_counter() - started, "metrics": outcome.metrics}


def refit_in_process(root: Path, memory, steps: int | None = None, parent: int | None = None) -> dict:
    from core.store.project import Project
    from core.training.events import JsonEvents
    from core.training.refit import refit

    stream = io.StringIO()
    note = load_note()
    started = time.perf_counter()
    with Project.open(root) as project:
        outcome = refit(project, parent, JsonEvents(stream), memory=memory, steps=steps)
    seconds = time.perf_counter() - started
    finished = json.loads(stream.getvalue().splitlines()[-1])
    assert outcome.status == "finished", finished
    started_event = next(e for e in map(json.loads, stream.getvalue().splitlines()) if e["event"] == "started")
    return {
        "run": outcome.run_id,
        "seconds": seconds,
        "phases": finished["timings_s"],
        "load": note,
        "steps": started_event["steps"],
        "metrics": outcome.metrics,
    }


def refit_cold(root: Path, threads: int) -> dict:
    """`main.py refit` as a fresh process: wall time to its exit, and its own account."""
    from core.threads import child_environment

    note = load_note()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "refit", str(root), "--events", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_environment(threads),
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"main.py refit failed ({done.returncode}): {done.stderr[-2000:]}")
    finished = json.loads(done.stdout.splitlines()[-1])
    return {"run": finished["run"], "seconds": seconds, "phases": finished["timings_s"], "load": note}


# -- the demo -----------------------------------------------------------------------------------
def demo_template(workdir: Path) -> tuple[Path, dict]:
    """The demo project with its first run (default settings)."""
    from core.ingest.demo import create_demo_project

    template = workdir / "demo"
    project, _ = create_demo_project(template)
    project.close()
    return template, train_parent(template)


def demo_rounds(workdir: Path, template: Path, rounds: int, every: int, threads: int, save, results: dict) -> dict:
    from core.training.refit import RefitMemory

    warm_root, cold_root, full_root = (workdir / name for name in ("warm", "cold", "full"))
    for root in (warm_root, cold_root, full_root):
        shutil.copytree(template, root)

    memory = RefitMemory()
    results["first_warm"] = refit_in_process(warm_root, memory)  # loads the encoder and the features
    results["warm"], results["cold"], results["accuracy"] = [], [], []
    for r in range(rounds):
        labeled = correct_from_queue(warm_root, every)
        results["warm"].append(refit_in_process(warm_root, memory))
        correct_from_queue(cold_root, every)
        results["cold"].append(refit_cold(cold_root, threads))
        # The full run sees exactly the warm chain's labels: copy them over.
        _copy_labels(warm_root, full_root)
        full = train_parent(full_root)
        results["accuracy"].append(
            {
                "round": r + 1,
                "labeled": labeled,
                "refit": results["warm"][-1]["metrics"].get("val_fused_accuracy"),
                "refit_steps": results["warm"][-1]["steps"],
                "full": full["metrics"].get("val_fused_accuracy"),
                "full_seconds": full["seconds"],
            }
        )
        save(results)
    return results


def _copy_labels(source: Path, target: Path) -> None:
    from sqlalchemy import delete, insert, select

    from core.store.models import Label
    from core.store.project import Project

    with Project.open(source) as project, project.session() as session:
        rows = [
            dict(image_id=r.image_id, label=r.label, source=r.source, annotator=r.annotator, updated_at=r.updated_at)
            for r in session.scalars(select(Label))
        ]
    with Project.open(target) as project, project.session() as session:
        session.execute(delete(Label))
        session.execute(insert(Label), rows)


# -- how the schedule was chosen -----------------------------------------------------------------
# (steps, learning-rate scale, teacher window in refits: 0 keeps the run's own EMA decay)
SCHEDULES = [
    (0, 0.5, 4),
    (20, 0.5, 4),
    (40, 0.5, 4),
    (60, 0.5, 4),
    (40, 1.0, 4),
    (40, 0.25, 4),
    (40, 0.5, 0),
    (80, 0.5, 0),
    (160, 0.5, 0),
]


def schedule_grid(workdir: Path, template: Path, every: int, save, results: dict) -> dict:
    """One round of corrections on the first run, then a refit of that run per schedule and a
    full run from scratch, all on the same labels."""
    from core.training import refit as refit_module

    root = workdir / "schedules"
    shutil.copytree(template, root)
    labeled = correct_from_queue(root, every)
    kept = refit_module.REFIT_LR_SCALE, refit_module.REFIT_EMA_HORIZON
    rows = []
    try:
        for steps, lr_scale, horizon in SCHEDULES:
            refit_module.REFIT_LR_SCALE, refit_module.REFIT_EMA_HORIZON = lr_scale, horizon
            outcome = refit_in_process(root, refit_module.RefitMemory(), steps=steps, parent=1)
            rows.append(
                {
                    "steps": steps,
                    "lr_scale": lr_scale,
                    "horizon": horizon,
                    "seconds": outcome["seconds"],
                    "acc": outcome["metrics"].get("val_fused_accuracy"),
                }
            )
            save(results)
    finally:
        refit_module.REFIT_LR_SCALE, refit_module.REFIT_EMA_HORIZON = kept
    full = train_parent(root)
    results["schedules"] = {
        "labeled": labeled,
        "rows": rows,
        "full": full["metrics"].get("val_fused_accuracy"),
        "full_seconds": full["seconds"],
    }
    save(results)
    return results


# -- FER2013-sized, synthetic features ----------------------------------------------------------
def fer_scale(workdir: Path, threads: int, rounds: int, every: int, save, results: dict) -> dict:
    root = workdir / "fer-scale"
    make_fer_scale_project(root)
    return _fer_refits(root, "fer", threads, rounds, lambda: _relabel_random(root, every), save, results)


def fer2013(workdir: Path, threads: int, rounds: int, every: int, parent_steps: int, save, results: dict) -> dict:
    """A studio copy of the real FER2013 benchmark project (bench.fer_project: its feature cache,
    100 labeled per class), a first run, then refits after each round of `every` corrections from
    the margin queue, labeled with the withheld truth."""
    from bench.fer_project import DEFAULT_ROOT, make_studio_copy

    root = workdir / "fer2013"
    make_studio_copy(DEFAULT_ROOT, root, FER_LABELED_PER_CLASS, 0)
    results["fer2013_parent_steps"] = parent_steps
    return _fer_refits(
        root,
        "fer2013",
        threads,
        rounds,
        lambda: correct_from_queue(root, every),
        save,
        results,
        parent_steps=parent_steps,
    )


def _fer_refits(
    root: Path, key: str, threads: int, rounds: int, correct, save, results: dict, parent_steps: int = 100
) -> dict:
    results[f"{key}_parent"] = train_parent(root, steps=parent_steps)
    save(results)
    from core.training.refit import RefitMemory

    memory = RefitMemory()
    results[f"{key}_first_warm"] = refit_in_process(root, memory)
    results[f"{key}_warm"], results[f"{key}_cold"] = [], []
    for _ in range(rounds):
        correct()
        results[f"{key}_warm"].append(refit_in_process(root, memory))
        save(results)
    correct()
    results[f"{key}_cold"].append(refit_cold(root, threads))
    save(results)
    return results


def make_fer_scale_project(root: Path) -> None:
    """FER2013's numbers of train and val faces with synthetic cached features (no images: the
    cache's shards hold class-clustered noise, so nothing is ever encoded)."""
    import numpy as np
    from sqlalchemy import insert

    from core.classes import class_names
    from core.encoders import get_encoder
    from core.store.models import HiddenTruth, Image, Label
    from core.store.project import Project
    from core.training.data import load_face_table
    from core.training.features import SHARD, FeatureCache

    names = class_names()
    rng = np.random.default_rng(0)
    total = FER_TRAIN + FER_VAL
    truth = rng.integers(0, len(names), total)
    splits = np.array(["train"] * FER_TRAIN + ["val"] * FER_VAL, dtype=object)
    labeled = set(np.flatnonzero(splits == "val").tolist())
    for c in range(len(names)):
        members = np.flatnonzero((truth == c) & (splits == "train"))
        labeled.update(rng.choice(members, FER_LABELED_PER_CLASS, replace=False).tolist())
    with Project.create(root) as project:
        with project.session() as session:
            session.execute(
                insert(Image),
                [
                    {
                        "id": i + 1,
                        "path": f"synthetic/{i:06d}.png",
                        "content_hash": f"{i:064x}",
                        "width": 48,
                        "height": 48,
                        "split": str(splits[i]),
                    }
                    for i in range(total)
                ],
            )
            session.execute(
                insert(Label),
                [{"image_id": i + 1, "label": names[truth[i]], "source": "imported"} for i in sorted(labeled)],
            )
            session.execute(
                insert(HiddenTruth),
                [{"image_id": i + 1, "label": names[truth[i]]} for i in range(total) if i not in labeled],
            )
        with project.session() as session:
            faces = load_face_table(project, session)
        encoder = get_encoder("offline")
        centres = rng.normal(size=(len(names), encoder.image_dim)).astype(np.float32)
        cache = FeatureCache(project.cache_dir("features"), encoder, 2, seed=0)
        for shard in np.unique(faces.ids // SHARD):  # written by the cache's own shard writer
            ids = faces.ids[faces.ids // SHARD == shard]
            views = centres[truth[ids - 1]][:, None, :] + 2.0 * rng.normal(
                size=(len(ids), cache.views, encoder.image_dim)
            ).astype(np.float32)
            cache._write_shard(int(shard), {int(i): v.astype(np.float16) for i, v in zip(ids, views)})
        _features, broken = cache.load(faces)
        assert not broken


def _relabel_random(root: Path, k: int) -> None:
    """k unlabeled train faces labeled with their withheld truth (the queue's order is no matter
    for timing)."""
    from sqlalchemy import select

    from core.labeling import set_label
    from core.store.models import HiddenTruth, Image, Label
    from core.store.project import Project

    with Project.open(root) as project:
        with project.session() as session:
            picks = session.execute(
                select(Image.id, HiddenTruth.label)
                .join(HiddenTruth, HiddenTruth.image_id == Image.id)
                .outerjoin(Label, Label.image_id == Image.id)
                .where(Image.split == "train", Label.image_id.is_(None))
                .order_by(Image.id)
                .limit(k)
            ).all()
        for face, label in picks:
            set_label(project, face, label, "bench")


# -- the report ---------------------------------------------------------------------------------
def _median(items: list[dict], key: str = "seconds") -> float:
    return statistics.median(item[key] for item in items)


def _phases(items: list[dict]) -> str:
    names = [name for name in items[0]["phases"] if name != "total"]
    return ", ".join(f"{name} {statistics.median(i['phases'][name] for i in items):.2f}" for name in names)


def render(results: dict, args) -> str:
    parent = results["parent"]
    lines = [
        "## Live refit: time and accuracy (`python -m bench.refit_timings`)",
        "",
        f"Machine: {machine_summary()}; refits with {results['threads']} compute thread(s) (the studio's warm "
        f"worker on 2 cores gets one). The demo (910 faces, 10 labeled per class) with a first sitfer run "
        f"of the default settings ({parent['metrics'].get('val_fused_accuracy', float('nan')):.3f} fused val "
        f"accuracy); then rounds of {results['every']} corrections (the newest run's margin queue, labeled "
        f"with the withheld truth), a refit after each.",
    ]
    if "warm" in results:
        lines += _render_demo(results)
    if "schedules" in results:
        lines += _render_schedules(results["schedules"])
    if "fer_warm" in results:
        lines += _render_fer_scale(results)
    if "fer2013_warm" in results:
        lines += _render_fer_scale(results, "fer2013")
    notes = [
        i["load"]
        for key in ("warm", "cold", "fer_warm", "fer_cold", "fer2013_warm", "fer2013_cold")
        for i in results.get(key, [])
    ]
    if notes:
        lines += ["", _what_else_ran(notes)]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines) + "\n"


def _what_else_ran(notes: list[str]) -> str:
    """The load notes of the measurements (load_note) in one sentence."""
    loads = [float(note.split()[1].split("/")[0]) for note in notes]
    busy = sorted({cmd.strip() for note in notes if "busy: " in note for cmd in note.split("busy: ", 1)[1].split(";")})
    return (
        f"What else ran: the 1-minute load average was {min(loads):.1f} to {max(loads):.1f} on the 2 cores as "
        f"the timed refits started; other busy processes seen: " + ("; ".join(f"`{b}`" for b in busy) or "none") + "."
    )


def _render_demo(results: dict) -> list[str]:
    lines = [
        "",
        "| demo refit | seconds (median) | phases (median s) |",
        "|---|---|---|",
        f"| warm, first (loads encoder, features) | {results['first_warm']['seconds']:.2f} | "
        f"{_phases([results['first_warm']])} |",
        f"| warm (in-process, RefitMemory kept), {len(results['warm'])} rounds | {_median(results['warm']):.2f} | "
        f"{_phases(results['warm'])} |",
        f"| cold (`main.py refit` process, to its exit), {len(results['cold'])} rounds | "
        f"{_median(results['cold']):.2f} | in-process part: {_phases(results['cold'])} |",
        "",
        "| round | labeled train faces | refit steps | refit fused val acc | full run fused val acc | refit / full "
        "| full run s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["accuracy"]:
        lines.append(
            f"| {row['round']} | {row['labeled']} | {row['refit_steps']} | {row['refit']:.3f} | "
            f"{row['full']:.3f} | {row['refit'] / row['full']:.1%} | {row['full_seconds']:.0f} |"
        )
    return lines


def _render_schedules(grid: dict) -> list[str]:
    lines = [
        "",
        f"How the schedule was chosen: refits of the first run after one round of corrections "
        f"({grid['labeled']} labeled train faces), against a full run from scratch on the same labels "
        f"({grid['full']:.3f} fused val accuracy, {grid['full_seconds']:.0f} s). Teacher window 4: EMA decay "
        f"1 - 4/steps (capped by the run's 0.99); \"run's\": the run's own 0.99.",
        "",
        "| steps | learning rate (of the run's) | teacher | fused val acc | of the full run | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in grid["rows"]:
        teacher = "run's" if row["horizon"] == 0 else f"window {row['horizon']}"
        lines.append(
            f"| {row['steps']} | {row['lr_scale']:g} | {teacher} | {row['acc']:.3f} | "
            f"{row['acc'] / grid['full']:.1%} | {row['seconds']:.1f} |"
        )
    return lines


def _render_fer_scale(results: dict, key: str = "fer") -> list[str]:
    if key == "fer":
        intro = (
            f"FER2013-sized project with synthetic cached features ({FER_TRAIN:,} train + {FER_VAL:,} val faces, "
            f"{FER_LABELED_PER_CLASS} labeled per class; a 100-step parent with a UMAP map; timing only):"
        )
        label = "FER-scale refit"
    else:
        parent = results[f"{key}_parent"]
        intro = (
            f"FER2013 itself: a studio copy of the benchmark project (`python -m bench.fer_project --studio-copy`: "
            f"27,485 train faces, {FER_LABELED_PER_CLASS} labeled per class, 3,562 val faces, the real feature "
            f"cache), a first sitfer run of {results[f'{key}_parent_steps']} steps with a UMAP map "
            f"({parent['seconds']:.0f} s, fused val accuracy "
            f"{parent['metrics'].get('val_fused_accuracy', float('nan')):.3f}), then rounds of "
            f"{results['every']} corrections from its margin queue (withheld truth), a refit after each:"
        )
        label = "FER2013 refit"
    warm = results[f"{key}_warm"]
    accuracy = ", ".join(f"{w['metrics'].get('val_fused_accuracy', float('nan')):.3f}" for w in warm)
    return [
        "",
        intro,
        "",
        f"| {label} | seconds (median) | phases (median s) |",
        "|---|---|---|",
        f"| warm, first | {results[f'{key}_first_warm']['seconds']:.2f} | {_phases([results[f'{key}_first_warm']])} |",
        f"| warm, {len(warm)} rounds ({warm[0]['steps']} steps) | {_median(warm):.2f} | {_phases(warm)} |",
        f"| cold (`main.py refit`) | {_median(results[f'{key}_cold']):.2f} | {_phases(results[f'{key}_cold'])} |",
    ] + ([] if key == "fer" else ["", f"Fused val accuracy after each warm refit: {accuracy}."])


def run_benchmark(args, save) -> dict:
    from core.threads import configure_threads

    os.environ["FER_STUDIO_THREADS"] = str(args.threads)
    configure_threads("worker")
    save = save or (lambda _results: None)
    results: dict = {"threads": args.threads, "every": args.every}
    with tempfile.TemporaryDirectory(prefix="refit-bench-") as tmp:
        template, results["parent"] = demo_template(Path(tmp))
        save(results)
        if "demo" in args.parts:
            demo_rounds(Path(tmp), template, args.rounds, args.every, args.threads, save, results)
        if "schedules" in args.parts:
            schedule_grid(Path(tmp), template, args.every, save, results)
        if "fer-scale" in args.parts:
            fer_scale(Path(tmp), args.threads, args.rounds, args.every, save, results)
        if "fer2013" in args.parts:
            fer2013(Path(tmp), args.threads, args.rounds, args.every, args.fer_parent_steps, save, results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=20, help="corrections between refits")
    parser.add_argument("--threads", type=int, default=1, help="compute threads of the refitting process")
    parser.add_argument(
        "--parts",
        type=lambda t: t.split(","),
        default=["demo"],
        help="comma-separated: demo (timings, refit against full runs), schedules, fer-scale",
    )
    parser.add_argument(
        "--fer-parent-steps",
        type=int,
        default=300,
        help="steps of the first run on the FER2013 studio copy (--parts fer2013)",
    )
    parser.add_argument("--json-out", type=Path, help="save the raw results here as they come")
    parser.add_argument("--render", type=Path, help="render saved results into docs/benchmarks.md and exit")
    parser.add_argument("--note", help="a paragraph for the section (what else ran, a reading)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    results = saved_or_run(args, run_benchmark)
    body = render(results, args)
    print(body)
    if not args.no_write:
        print(f"written to {write_section(SECTION, body, rendered_only=bool(args.render))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
