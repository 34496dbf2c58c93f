"""Import throughput on FER2013 train (28,709 files of 48x48 grayscale JPEG).

Each configuration imports the whole folder into a fresh project, timing the reading phase
(hash, decode, validate: parallel) and the writing phase (batched SQLite inserts) separately.
Usage: python -m bench.import_throughput [--repeats 2] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.report import SHARED_DATA, machine_summary, write_section
from core.ingest.importer import ImportOptions, import_source
from core.store.project import Project


def run_once(source: Path, workers: int, keep: int | None) -> dict:
    marks: dict[str, float] = {}

    def progress(event):
        marks.setdefault(f"{event.phase}_first", time.perf_counter())
        marks[f"{event.phase}_last"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        project = Project.create(Path(tmp) / "p")
        report = import_source(
            project, source, ImportOptions(workers=workers, keep_labels_per_class=keep), progress=progress
        )
        total = time.perf_counter() - start
        project.close()
    writing = marks["writing_last"] - marks["reading_last"]
    return {
        "files": report.files,
        "faces": report.imported,
        "skipped": len(report.skipped),
        "total": total,
        "reading": marks["reading_last"] - start,
        "writing": writing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    source = SHARED_DATA / "fer2013" / "train"
    if not source.is_dir():
        print(f"skipped: FER2013 not found at {source} (set FER_SHARED_DATA)", file=sys.stderr)
        return 0
    configs = [("1 process", 1, None), ("2 processes", 2, None), ("2 processes, --keep-labels-per-class 25", 2, 25)]
    rows = []
    for name, workers, keep in configs:
        runs = [run_once(source, workers, keep) for _ in range(args.repeats)]
        faces = runs[0]["faces"]
        total = statistics.median(r["total"] for r in runs)
        rows.append(
            f"| {name} | {runs[0]['files']:,} | {faces:,} | {runs[0]['skipped']:,} | "
            f"{statistics.median(r['reading'] for r in runs):.1f} | "
            f"{statistics.median(r['writing'] for r in runs):.1f} | {total:.1f} | "
            f"**{faces / total:,.0f}** |"
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## Import throughput (FER2013 train)",
            "",
            f"`python -m bench.import_throughput --repeats {args.repeats}`: the full importer (hash, decode, "
            "validate, duplicate check, SQLite writes in batches of 500) on `../shared/data/fer2013/train`, "
            "48x48 grayscale JPEG, into a fresh project each time; the median of the repeats. "
            f"Machine: {machine_summary()}. Files on the local disk, page cache warm.",
            "",
            "| configuration | files | faces imported | skipped (all byte-identical duplicates) | reading s | writing s | total s | faces/s |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    if not args.no_write:
        print(f"written to {write_section('import-throughput', body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
