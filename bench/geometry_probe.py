"""Face-mesh geometry on FER2013: how to normalise it (chosen on a dev split of train, never on
val), what it costs per face, and how often the mesh cannot read a face.

Linear probes (logistic regression on standardised inputs, scikit-learn) trained on N = 100 train
faces per class (5 seeds) and scored on DEV_FACES other train faces (hidden truth): the image
features alone, the geometry alone under each normalisation (with and without depth), and both.
The winner becomes core/training/geometry.py's NORMALISATION; its LAYOUT (which points, with or
without depth) and GEOMETRY_GAIN are chosen the same way, with the studio's own supervised head on
image features + geometry.

    python -m bench.geometry_probe [--json-out FILE]   # writes the "geometry-probe" section of docs/benchmarks.md
    python -m bench.geometry_probe --render docs/results/geometry_probe.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.fer_project import DEFAULT_ROOT, ensure_features, ensure_meshes, ensure_project, hidden_labels
from bench.report import machine_summary, publish, saved_or_run
from bench.ssl_benchmark import labeled_subset
from core.training.geometry import NORMALISATIONS, POINTS, LandmarkCache, geometry_vector

# (layout, gain) pairs tried with the studio's head.
HEAD_TRIALS = (("full", 1.0), ("full", 8.0), ("full", 24.0), ("contours", 8.0), ("contours", 16.0), ("contours", 24.0))
HEAD_SEEDS = (0, 1, 2)
HEAD_STEPS = 1000
DEV_FACES = 3000
PER_CLASS = 100
SEEDS = (0, 1, 2, 3, 4)
COST_FACES = 300


def probe(train_x: np.ndarray, train_y: np.ndarray, dev_x: np.ndarray, dev_y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    model.fit(train_x, train_y)
    return float((model.predict(dev_x) == dev_y).mean())


def geometry_inputs(meshes, how: str, depth: bool) -> np.ndarray:
    from core.training.geometry import FULL_MESH

    vectors = geometry_vector(meshes.points[:, 0].astype(np.float32), meshes.found[:, 0], how, layout=FULL_MESH)
    if depth:
        return vectors
    xy = vectors[:, :-1].reshape(len(vectors), POINTS, 3)[:, :, :2].reshape(len(vectors), -1)
    return np.concatenate([xy, vectors[:, -1:]], axis=1)


def head_gain_trials(features, meshes, truth, faces, pool, dev, how: str) -> dict[str, list[float]]:
    """The layout and gain of the geometry vector, tried where they are used: a supervised head
    (the studio's own trainer) on image features + geometry, N = PER_CLASS, scored on the dev
    split; the image features alone beside them."""
    import torch

    from core.training.geometry import CONTOURS, FULL_MESH, with_geometry
    from core.training.head import build_head_trainer
    from core.training.inference import predict
    from core.training.loop import LoopConfig
    from core.training.settings import TrainSettings

    encoder_text = torch.zeros(7, 384)  # the supervised head reads no class text
    layouts = {"full": FULL_MESH, "contours": CONTOURS}
    results: dict[str, list[float]] = {}
    for layout, gain in (("none", 0.0), *HEAD_TRIALS):
        joined = features if layout == "none" else with_geometry(features, meshes, how, gain, layouts[layout])
        key = "image features alone" if layout == "none" else f"{layouts[layout].name}, gain {gain:g}"
        for seed in HEAD_SEEDS:
            chosen = labeled_subset(truth[pool], faces.ids[pool], PER_CLASS, seed)
            settings = TrainSettings(algorithm="supervised", loop=LoopConfig(steps=HEAD_STEPS, seed=seed))
            trainer = build_head_trainer(joined[pool], chosen, encoder_text, settings, torch.device("cpu"))
            trainer.run()
            dev_pred = predict(trainer.ema.module, trainer.algorithm, torch.from_numpy(joined[dev, 0]), trainer.step)
            results.setdefault(key, []).append(float((dev_pred.fused.argmax(1) == truth[dev]).mean()))
        print(f"{key}: supervised head dev accuracy {results[key]}", flush=True)
    return results


def mesh_cost(project, faces, rows: np.ndarray, folder: Path) -> float:
    """Milliseconds per face to compute the meshes of `rows` into an empty cache (1 thread)."""
    started = time.perf_counter()
    LandmarkCache(folder).load(faces, rows)
    return (time.perf_counter() - started) / len(rows) * 1000


def run(root: Path) -> dict:
    import tempfile

    project = ensure_project(root)
    _encoder, faces, features, broken, _ = ensure_features(project)
    meshes, mesh_seconds = ensure_meshes(project, faces)
    truth = hidden_labels(project, faces)
    train = np.flatnonzero((faces.splits == "train") & (truth >= 0))
    rng = np.random.default_rng(2024)
    dev = np.sort(rng.choice(train, size=DEV_FACES, replace=False))
    pool = np.setdiff1d(train, dev)
    image = features[:, 0].astype(np.float32)
    inputs = {"image features": image}
    for how in NORMALISATIONS:
        for depth in (False, True):
            inputs[f"geometry: {how}{', with depth' if depth else ''}"] = geometry_inputs(meshes, how, depth)
    scores: dict[str, list[float]] = {name: [] for name in inputs}
    combined: dict[str, list[float]] = {}
    for seed in SEEDS:
        chosen = labeled_subset(truth[pool], faces.ids[pool], PER_CLASS, seed)
        rows = pool[chosen >= 0]
        for name, x in inputs.items():
            scores[name].append(probe(x[rows], truth[rows], x[dev], truth[dev]))
            if name != "image features":
                both = np.concatenate([image, x], axis=1)
                combined.setdefault(f"image features + {name}", []).append(
                    probe(both[rows], truth[rows], both[dev], truth[dev])
                )
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in {**scores, **combined}.items()), flush=True)
    best = max(NORMALISATIONS, key=lambda how: statistics.mean(scores[f"geometry: {how}, with depth"]))
    gains = head_gain_trials(features, meshes, truth, faces, pool, dev, best)
    with tempfile.TemporaryDirectory() as tmp:
        cost_rows = np.flatnonzero(faces.splits == "val")[:COST_FACES]
        cost_ms = mesh_cost(project, faces, cost_rows, Path(tmp))
    rms_image = float(np.sqrt((image**2).mean()))
    found = meshes.found[:, 0]
    return {
        "machine": machine_summary(),
        "per_class": PER_CLASS,
        "seeds": list(SEEDS),
        "dev_faces": DEV_FACES,
        "scores": {**scores, **combined},
        "normalisation": best,
        "gains": gains,
        "head_steps": HEAD_STEPS,
        "rms": {
            "image features": rms_image,
            **{
                how: float(
                    np.sqrt(
                        (
                            geometry_vector(meshes.points[found, 0].astype(np.float32), found[found], how, gain=1.0)[
                                :, :-1
                            ]
                            ** 2
                        ).mean()
                    )
                )
                for how in NORMALISATIONS
            },
        },
        "found": {
            split: [int(found[faces.splits == split].sum()), int((faces.splits == split).sum())]
            for split in ("train", "val")
        },
        "mirror_found": int(meshes.found[:, 1].sum()),
        "mesh_ms_per_face": cost_ms,
        "cost_faces": COST_FACES,
        "all_meshes_seconds": mesh_seconds,
        "unreadable": len(broken),
    }


def render(r: dict) -> str:
    def cell(values):
        return f"{statistics.mean(values) * 100:.1f} ± {statistics.stdev(values) * 100:.1f}"

    lines = [
        "## Face-mesh geometry: normalisation, coverage and cost (FER2013)",
        "",
        f"`python -m bench.geometry_probe` - linear probes (standardised inputs, logistic regression, "
        f"C = 0.05) on {r['per_class']} FER2013 train faces per class, seeds {', '.join(map(str, r['seeds']))}, "
        f"scored on {r['dev_faces']:,} other train faces (a dev split: val untouched). Machine: {r['machine']}; "
        f"{r.get('note') or 'nothing else running'}.",
        "",
        "| input | dev accuracy % (mean ± sd) |",
        "|---|---|",
    ]
    for name, values in r["scores"].items():
        lines.append(f"| {name} | {cell(values)} |")
    found = r["found"]
    lines += [
        "",
        "Faces whose mesh was read: "
        + ", ".join(f"{split} {n:,} of {total:,} ({n / total * 100:.1f}%)" for split, (n, total) in found.items())
        + f"; mirrored faces {r['mirror_found']:,}. Cost: {r['mesh_ms_per_face']:.1f} ms per face "
        f"(face and mirror, detector + mesh, 1 thread, {r['cost_faces']} val faces into an empty cache)"
        + (
            f"; the project's meshes took {r['all_meshes_seconds']:.0f} s to compute"
            if r["all_meshes_seconds"] > 5
            else ""
        )
        + ".",
        "",
        "Root-mean-square of each input before the gain (the geometry in the contour layout): "
        + ", ".join(f"{k} {v:.3f}" for k, v in r["rms"].items())
        + ".",
        "",
        f"Which points and what gain, tried where they are used: the studio's supervised head "
        f"({r['head_steps']} steps, N = {r['per_class']}, seeds {', '.join(map(str, HEAD_SEEDS))}) on image "
        f"features + geometry (`{r['normalisation']}`), dev accuracy %:",
        "",
        "| input | dev accuracy %, per seed | mean |",
        "|---|---|---|",
    ]
    for name, values in r["gains"].items():
        lines.append(
            f"| {name} | " + ", ".join(f"{v * 100:.1f}" for v in values) + f" | {statistics.mean(values) * 100:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", help="what else ran on the machine (default: nothing else running)")
    parser.add_argument("--json-out", type=Path, help="also save the results here")
    parser.add_argument("--render", type=Path, help="write the section from results saved by --json-out")
    args = parser.parse_args(argv)
    results = saved_or_run(args, lambda a, _save: {**run(a.project), "note": a.note})
    return publish("geometry-probe", render(results), args)


if __name__ == "__main__":
    sys.exit(main())
