"""Fine-tune mode's image pipeline alone: how many faces a second the decoding workers deliver,
and the bytes a step moves from them, with no model (FER2013 train; the CPU side of a GPU run).

A fine-tune step draws a labeled batch (one weak view each) and, for the semi-supervised
methods, an unlabeled batch (weak and strong views). This times `ImageBatches.next_batch`, the
loader the trainer uses, on the CPU device after a warm-up.

    python -m bench.image_pipeline --workers 2 --steps 60
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.fer_project import DEFAULT_ROOT, ensure_project
from bench.report import machine_summary, write_section
from core.encoders import get_encoder
from core.training.data import load_face_table
from core.training.finetune import ImageBatches

SECTION = "image-pipeline"


def measure(
    faces, encoder, workers: int, steps: int, batch_size: int, unlabeled_ratio: int, repeats: int = 3, warmup: int = 5
) -> dict:
    train = np.flatnonzero(faces.splits == "train")
    rng = np.random.default_rng(0)
    labeled = rng.choice(train, 7 * 25, replace=False)
    unlabeled = np.setdiff1d(train, labeled)
    slots = np.full(len(faces), -1, dtype=np.int64)
    slots[train] = np.arange(len(train))
    source = ImageBatches(
        faces,
        labeled,
        rng.integers(0, 7, len(labeled)),
        unlabeled,
        slots,
        encoder.preprocessor(),
        batch_size,
        unlabeled_ratio,
        0,
        torch.device("cpu"),
        workers=workers,
    )
    for step in range(warmup):
        source.next_batch(step)
    # What crosses from the workers: the loader's own tensors, before next_batch normalises them.
    labeled_batch = next(source._labeled)
    moved = sum(t.numel() * t.element_size() for t in labeled_batch)
    if source._unlabeled is not None:
        moved += sum(t.numel() * t.element_size() for t in next(source._unlabeled))
    times = []
    for _ in range(repeats):  # the median of a few timed stretches: other processes share the cores
        started = time.perf_counter()
        for step in range(steps):
            source.next_batch(step)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    faces_per_step = batch_size * (1 + unlabeled_ratio)
    return {
        "workers": workers,
        "unlabeled_ratio": unlabeled_ratio,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "faces_per_s": steps * faces_per_step / seconds,
        "mib_per_step": moved / 2**20,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--workers", type=lambda t: [int(v) for v in t.split(",")], default=[2])
    parser.add_argument("--steps", type=int, default=40, help="steps per timed stretch")
    parser.add_argument("--repeats", type=int, default=3, help="timed stretches; the median is reported")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--label", default="", help="what this run measures (e.g. a commit), for the table")
    parser.add_argument(
        "--earlier-rows",
        type=Path,
        help="table rows this script printed in an earlier run (another commit's code, say), "
        "shown above this run's rows",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    project = ensure_project(args.project)
    with project.session() as session:
        faces = load_face_table(project, session)
    encoder = get_encoder("offline")
    rows = (
        [line for line in args.earlier_rows.read_text().splitlines() if line.startswith("| ")]
        if args.earlier_rows
        else []
    )
    for workers in args.workers:
        for ratio in (0, 3):
            r = measure(faces, encoder, workers, args.steps, args.batch_size, ratio, args.repeats)
            rows.append(
                f"| {args.label} | {workers} | {'labeled only' if ratio == 0 else 'labeled + 3x unlabeled'} | "
                f"{r['steps_per_s']:.1f} | {r['faces_per_s']:,.0f} | {r['mib_per_step']:.1f} |"
            )
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## Fine-tune mode's image pipeline (CPU side)",
            "",
            f"`python -m bench.image_pipeline` - FER2013 train faces through `ImageBatches.next_batch` with no model, "
            f"batch {args.batch_size} labeled (+ {3 * args.batch_size} unlabeled with weak and strong views), "
            f"the median of {args.repeats} stretches of {args.steps} steps after 5 warm-up steps; the model's "
            f"device is the CPU, so the normalisation a GPU run does on the GPU runs here in the main process. "
            f"{machine_summary()}; torch {torch.__version__}.",
            "",
            "| code | workers | batches | steps/s | faces/s | MiB a step from the workers |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
