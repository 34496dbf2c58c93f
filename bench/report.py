"""Shared by the benchmarks: machine facts and writing a result section into docs/benchmarks.md.

Each benchmark owns one section between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
markers and rewrites only that section, so results of different benchmarks live side by side.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
SHARED_DATA = Path(os.environ.get("FER_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine_summary() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def write_section(name: str, body: str, rendered_only: bool = False) -> Path:
    """Replace (or append) section `name` of docs/benchmarks.md. `rendered_only`: the body was
    rendered from saved results, so the section keeps the time it was measured at."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    old = pattern.search(text)
    # The whole stamp line: a stamp may name strategies with underscores (typical_margin).
    measured = re.search(r"^_Measured (.+)\._$", old.group(0), re.M) if old and rendered_only else None
    if measured:
        stamp = measured.group(1)
    block = f"<!-- bench:{name} -->\n{body.rstrip()}\n\n_Measured {stamp}._\n<!-- /bench:{name} -->"
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS_MD.write_text(text, encoding="utf-8")
    return BENCHMARKS_MD


def keep_note(args, results: dict) -> dict:
    """A reading given with --render (written after the run) is kept with the saved results."""
    if args.render and args.note:
        results["note"] = args.note
        args.render.write_text(json.dumps(results, indent=1))
    return results


def saved_or_run(args, run_benchmark: Callable) -> dict:
    """The results a benchmark script reports: the saved ones (--render FILE), or a fresh run
    that rewrites --json-out after every measurement (run_benchmark's second argument) and at
    the end."""
    if args.render:
        return json.loads(args.render.read_text())
    save = (lambda r: args.json_out.write_text(json.dumps(r, indent=1))) if args.json_out else None
    results = run_benchmark(args, save)
    if save:
        save(results)
    return results


def add_report_arguments(parser, json_results: Path) -> None:
    """The options every measuring benchmark shares: threads, a note on what else ran, and where
    its results go (--no-write, --json-out, --render; see saved_or_run and publish)."""
    parser.add_argument("--threads", type=int, default=1, help="compute threads (default 1)")
    parser.add_argument("--note", default="", help="what else ran, for the report")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--json-out", type=Path, help=f"save the results here as they come (e.g. {json_results})")
    parser.add_argument("--render", type=Path, help="render saved results instead of measuring")


def publish(section: str, body: str, args) -> int:
    """Print a rendered section and write it into docs/benchmarks.md unless --no-write; a section
    rendered from saved results (--render) keeps the time it was measured at."""
    print(body)
    if not args.no_write:
        write_section(section, body, rendered_only=bool(args.render))
    return 0
