"""The embedding map at scale: reading a run's map from the store, drawing it, and panning it.

On bench.gui_timings' synthetic project (small face images, one finished run with per-level and
fused predictions, embeddings and UMAP/PCA maps written into the store), for each size:
- load: `core.run_data.load_run_map` from an open session to the arrays the view draws;
- first draw: the studio's EmbeddingMap given those arrays until its first frame is rendered;
- pan: one frame of the view moved a little, rendered offscreen (the map's paint of every point),
  median and worst over 40 frames, coloured by label and by confidence.
Offscreen Qt, one thread per library. The studio's window is 1600x1000 with the map dock raised.
Usage: python -m bench.map_timings [--faces 30000 100000] [--no-write] [--json-out F | --render F]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.gui_timings import make_project
from bench.report import machine_summary, publish, saved_or_run

SECTION = "map-responsiveness"
FRAMES = 40
COLOR_MODES = ("label", "confidence")


def measure(project: Path) -> dict:
    """Load, first draw and pan frames of the project's run in the studio's map, in this process."""
    from PySide6.QtWidgets import QApplication

    from app.main import application
    from app.main_window import MainWindow
    from core.run_data import load_run_map
    from core.store.project import Project

    app = application()
    with Project.open(project) as store, store.session() as session:
        started = time.perf_counter()
        data = load_run_map(session, 1)
        load_s = time.perf_counter() - started
    assert data is not None, "the synthetic run has a map"
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    QApplication.processEvents()
    view = window.map_view
    started = time.perf_counter()
    view.show_map(data)
    view.plot.grab()  # the first frame with every point
    first_draw_s = time.perf_counter() - started
    viewport = view.plot.viewport()
    result: dict = {
        "faces": len(data),
        "load_s": load_s,
        "first_draw_s": first_draw_s,
        "viewport": f"{viewport.width()}x{viewport.height()}",
        "pan_ms": {},
    }
    for mode in COLOR_MODES:
        view.set_color_mode(mode)
        view.plot.grab()  # pyqtgraph's symbol cache filled for this colouring
        frames = []
        for i in range(FRAMES):
            view.view.translateBy(x=0.05 * (1 if i % 20 < 10 else -1), y=0.03)
            app.processEvents()
            tick = time.perf_counter()
            # Offscreen, viewport.repaint() paints nothing: a frame is rendered into a pixmap instead.
            view.plot.grab()
            frames.append(1000 * (time.perf_counter() - tick))
        result["pan_ms"][mode] = {"median": statistics.median(frames), "worst": max(frames)}
    window.close()
    return result


def run(args, save) -> dict:
    results: dict = {"machine": machine_summary(), "note": args.note, "sizes": []}
    for faces in args.faces:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            project = make_project(Path(tmp), faces)
            print(f"project of {faces:,} faces made in {time.perf_counter() - started:.0f} s", flush=True)
            results["sizes"].append(measure(project))
        print(results["sizes"][-1], flush=True)
        if save:
            save(results)
    return results


def render(results: dict) -> str:
    rows = [
        f"| {r['faces']:,} | {1000 * r['load_s']:.0f} | {1000 * r['first_draw_s']:.0f} | "
        + " | ".join(f"{r['pan_ms'][m]['median']:.1f} / {r['pan_ms'][m]['worst']:.1f}" for m in COLOR_MODES)
        + " |"
        for r in results["sizes"]
    ]
    viewport = results["sizes"][0]["viewport"] if results["sizes"] else "?"
    return "\n".join(
        [
            "## The embedding map at scale",
            "",
            "`python -m bench.map_timings`: bench.gui_timings' synthetic project (one finished run with its UMAP map "
            "written into the store); the run's map read with `load_run_map`, shown in the studio's map "
            f"(window 1600x1000, map viewport {viewport} px, offscreen raster painting), then panned {FRAMES} "
            "frames per colouring. One thread per library. "
            f"Machine: {results['machine']}. {results['note']}",
            "",
            "| faces | load ms | first draw ms | pan frame ms, by label (median / worst) | "
            "pan frame ms, by confidence (median / worst) |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, nargs="+", default=[30_000])
    parser.add_argument("--note", default="", help="what else ran, for the report")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--json-out", type=Path, help="save the results here as they come")
    parser.add_argument("--render", type=Path, help="render saved results instead of measuring")
    args = parser.parse_args(argv)
    return publish(SECTION, render(saved_or_run(args, run)), args)


if __name__ == "__main__":
    raise SystemExit(main())
